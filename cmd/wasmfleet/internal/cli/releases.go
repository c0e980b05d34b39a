package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wasmfleet/wasmfleet/signing"
)

func init() {
	register("releases", "list the releases in the bucket", releasesCmd)
}

const releasesSynopsis = `[NAME] [--trust root.json] [--json] [S3 flags]

Lists every release under releases/ (or only NAME's): version, module digest and size, the key
ids its signatures name, when it was published, and what is wrong with it, if anything. With
--trust, each release is also verified and SIGNED BY lists the release keys that counted.`

func releasesCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "releases", releasesSynopsis)
	trustPath := fs.String("trust", "", "verify each release against this trust file")
	asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
	s3 := addS3Flags(fs)
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usagef("releases takes at most one module name (usage: wasmfleet releases %s)", strings.SplitN(releasesSynopsis, "\n", 2)[0])
	}
	var v *signing.Verifier
	if *trustPath != "" {
		tb, err := readFile("--trust", *trustPath)
		if err != nil {
			return opError{"trust", err}
		}
		t, err := signing.ParseTrust(tb)
		if err != nil {
			return refused(fmt.Errorf("%s: %w", *trustPath, err))
		}
		v = &signing.Verifier{Trust: t}
	}
	bucket, err := s3.open(env)
	if err != nil {
		return err
	}
	entries, err := bucket.List(ctx, fs.Arg(0), v)
	if err != nil {
		return opError{"s3", err}
	}
	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(entries)
	}
	if len(entries) == 0 {
		what := "releases"
		if fs.NArg() == 1 {
			what = "releases of " + fs.Arg(0)
		}
		fmt.Fprintf(env.Stderr, "no %s in s3://%s\n", what, bucket.Name())
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tSHA256\tSIZE\tSIGNED BY\tPUBLISHED\tSTATUS")
	for _, e := range entries {
		ids := e.KeyIDs
		if e.Verified {
			ids = e.SignedBy
		}
		status := "ok"
		switch {
		case e.Problem != "":
			status = oneLine(e.Problem)
		case e.Verified:
			status = "verified"
		}
		published := "-"
		if !e.Published.IsZero() {
			published = e.Published.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Version, orDash(short12(e.SHA256)),
			orDash(sizeOf(e.Size, e.SHA256 != "")), orDash(shortIDsComma(ids)), published, status)
	}
	return tw.Flush()
}

func sizeOf(n uint64, known bool) string {
	if !known {
		return ""
	}
	return humanBytes(int64(n))
}

func shortIDsComma(ids []string) string {
	if len(ids) == 0 {
		return ""
	}
	return strings.ReplaceAll(shortIDs(ids), " ", "")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// humanBytes writes a byte count with a binary unit: 3008 B, 2.9 KiB, 12.0 MiB.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

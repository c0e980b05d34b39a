package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmfleet/wasmfleet/cmd/wasmfleet/internal/devenv"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
)

// inDevDir makes a directory holding .wasmfleet-dev/env with ef (nil: no file), makes it
// the current directory for the test, and unsets the S3 and MQTT variables.
func inDevDir(t *testing.T, ef *devenv.EnvFile) {
	t.Helper()
	dir := t.TempDir()
	if ef != nil {
		if err := os.Mkdir(filepath.Join(dir, devenv.DefaultDir), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := ef.Write(filepath.Join(dir, devEnvPath)); err != nil {
			t.Fatal(err)
		}
	}
	t.Chdir(dir)
	for _, n := range devEnvNames {
		t.Setenv(n, "")
	}
}

func runMain(args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

// TestDevEnvFallback: commands given no S3 or MQTT settings use the dev environment file,
// secrets included (a real versitygw and a Mosquitto with a password check them), and say
// so; any flag or variable of their own turns it off; a broken file is an error.
func TestDevEnvFallback(t *testing.T) {
	s3 := testenv.StartS3(t, nil)
	s3.MakeBucket("fleet")
	mq := testenv.StartMosquitto(t, &testenv.MosquittoOptions{Users: map[string]string{"dev": "dev-pw"}})
	good := devenv.EnvFile{S3Endpoint: s3.Endpoint(), S3Bucket: "fleet", S3Region: s3.Region, S3AccessKey: s3.AccessKey,
		S3SecretKey: s3.SecretKey, S3Insecure: true, MQTTBrokers: mq.URL(), MQTTUsername: "dev", MQTTPassword: "dev-pw"}

	t.Run("s3 from the file", func(t *testing.T) {
		inDevDir(t, &good)
		code, out, errs := runMain("releases")
		if code != 0 || !strings.Contains(errs, "no releases in s3://fleet") {
			t.Fatalf("releases: exit %d\n%s%s", code, out, errs)
		}
		if !strings.Contains(errs, "note: using the dev environment of .wasmfleet-dev/env (s3 "+s3.Endpoint()+" bucket fleet)") ||
			!strings.Contains(errs, "it is not running: start it with wasmfleet dev") {
			t.Errorf("releases did not say where it went:\n%s", errs)
		}
	})
	t.Run("s3 secret from the file", func(t *testing.T) {
		bad := good
		bad.S3SecretKey = "wrong"
		inDevDir(t, &bad)
		if code, out, errs := runMain("releases"); code != 2 || !strings.Contains(errs, "error: s3:") {
			t.Errorf("releases with a wrong secret in the file: exit %d\n%s%s", code, out, errs)
		}
	})
	t.Run("mqtt and its password from the file", func(t *testing.T) {
		inDevDir(t, &good)
		code, out, errs := runMain("devices", "--idle", "200ms")
		if code != 0 || !strings.Contains(errs, "0 devices (0 online) of 0 reporting") || !strings.Contains(errs, "broker "+mq.URL()) {
			t.Errorf("devices: exit %d\n%s%s", code, out, errs)
		}
		bad := good
		bad.MQTTPassword = "wrong"
		inDevDir(t, &bad)
		if code, out, errs := runMain("devices", "--idle", "200ms"); code != 2 || !strings.Contains(errs, "error: mqtt:") {
			t.Errorf("devices with a wrong password in the file: exit %d\n%s%s", code, out, errs)
		}
	})
	t.Run("a flag turns it off", func(t *testing.T) {
		inDevDir(t, &good)
		code, _, errs := runMain("releases", "--bucket", "fleet")
		if code != 1 || strings.Contains(errs, "dev environment") || !strings.Contains(errs, "s3 endpoint is required") {
			t.Errorf("releases --bucket: exit %d\n%s", code, errs)
		}
		// An MQTT flag turns off the S3 settings too: one environment or the other, not both.
		code, _, errs = runMain("rollout", "status", "r-1", "--broker", mq.URL())
		if code != 1 || strings.Contains(errs, "dev environment") || !strings.Contains(errs, "s3 endpoint is required") {
			t.Errorf("rollout status --broker: exit %d\n%s", code, errs)
		}
	})
	t.Run("a variable turns it off", func(t *testing.T) {
		inDevDir(t, &good)
		t.Setenv(s3BucketEnv, "fleet")
		code, _, errs := runMain("releases")
		if code != 1 || strings.Contains(errs, "dev environment") || !strings.Contains(errs, "s3 endpoint is required") {
			t.Errorf("releases with %s set: exit %d\n%s", s3BucketEnv, code, errs)
		}
	})
	t.Run("no file", func(t *testing.T) {
		inDevDir(t, nil)
		code, _, errs := runMain("releases")
		if code != 1 || strings.Contains(errs, "dev environment") || !strings.Contains(errs, "s3 endpoint is required") {
			t.Errorf("releases without a dev environment: exit %d\n%s", code, errs)
		}
	})
	t.Run("a malformed file", func(t *testing.T) {
		inDevDir(t, nil)
		if err := os.Mkdir(devenv.DefaultDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(devEnvPath, []byte("WASMFLEET_S3_BUCKET=$(reboot)\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, errs := runMain("releases")
		if code != 2 || !strings.Contains(errs, "error: dev-env:") || !strings.Contains(errs, "line 1") {
			t.Errorf("releases with a malformed dev environment: exit %d\n%s", code, errs)
		}
	})
	t.Run("commands without S3 or MQTT flags ignore it", func(t *testing.T) {
		inDevDir(t, &good)
		code, out, errs := runMain("keygen", "--password-file", "/dev/null", "k")
		if code != 0 || strings.Contains(errs, "dev environment") {
			t.Errorf("keygen: exit %d\n%s%s", code, out, errs)
		}
	})
}

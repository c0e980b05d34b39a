package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/wasmfleet/wasmfleet/fleet/controller"
	"github.com/wasmfleet/wasmfleet/fleet/publish"
	"github.com/wasmfleet/wasmfleet/fleet/registry"
	"github.com/wasmfleet/wasmfleet/fleet/rollout"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

func init() {
	register("rollout", "start, watch, pause, resume, abort and list staged rollouts", rolloutCmd)
}

const rolloutSynopsis = `start --release NAME@VERSION --group G [--waves 1,10,50,100] [--soak 10m] [--max-failure 5%]
                         [--min-devices 3] [--timeout 30m] [--previous NAME@VERSION | --new] [--id ID]
       wasmfleet rollout status ID [--watch] [--json]
       wasmfleet rollout pause|resume ID
       wasmfleet rollout abort ID [--reason TEXT]
       wasmfleet rollout list [--group G] [--json]

Every subcommand takes the S3 flags (the bucket holds rollouts/ID.json and audit/): the operator
writes the rollout document, the controller (wasmfleet serve) does the rest. start also reads
the group's current desired state, to know what to go back to and which other modules to keep:
the retained message on the broker when a broker is given (MQTT flags), verified with the
trust file, else (or when the broker holds none) the last one a rollout of the group signed.
status shows each wave's tally from the audit records and, with a broker, the current wave's
devices live.`

func rolloutCmd(ctx context.Context, env *Env, args []string) error {
	if len(args) == 0 {
		return usagef("usage: wasmfleet rollout %s", strings.SplitN(rolloutSynopsis, "\n\n", 2)[0])
	}
	switch args[0] {
	case "start":
		return rolloutStart(ctx, env, args[1:])
	case "status":
		return rolloutStatus(ctx, env, args[1:])
	case "pause", "resume", "abort":
		return rolloutOperate(ctx, env, args[0], args[1:])
	case "list":
		return rolloutList(ctx, env, args[1:])
	case "-h", "--help", "help":
		fmt.Fprintf(env.Stderr, "usage: wasmfleet rollout %s\n", rolloutSynopsis)
		return nil
	}
	return usagef("unknown rollout subcommand %q (start, status, pause, resume, abort, list)", args[0])
}

// defaultActor names the operator in the audit records: $USER, else "operator".
func defaultActor() string {
	if u := os.Getenv("USER"); u != "" {
		return u
	}
	return "operator"
}

// rolloutStore opens the bucket as the rollout controller's Store.
func rolloutStore(s3 *s3Flags) (*controller.Store, error) {
	cfg, err := s3.config()
	if err != nil {
		return nil, err
	}
	st, err := controller.OpenStore(cfg)
	if err != nil {
		return nil, opError{"s3", err}
	}
	return st, nil
}

// operatorController is a rollout.Controller that only reads and writes documents.
func operatorController(store rollout.Store) (*rollout.Controller, error) {
	c, err := rollout.New(rollout.Options{Store: store, ID: "cli"})
	if err != nil {
		return nil, opError{"rollout", err}
	}
	return c, nil
}

func rolloutError(err error) error {
	switch {
	case errors.Is(err, rollout.ErrNotFound):
		return opError{"not-found", err}
	case errors.Is(err, rollout.ErrState):
		return opError{"state", err}
	case errors.Is(err, rollout.ErrConflict):
		return opError{"conflict", err}
	}
	var ue usageError
	var oe opError
	if errors.As(err, &ue) || errors.As(err, &oe) {
		return err
	}
	return opError{"rollout", err}
}

// parseRef reads NAME@VERSION.
func parseRef(flag, s string) (name, version string, err error) {
	name, version, err = registry.ParseModule(s)
	if err == nil && version == "" {
		err = fmt.Errorf("%q has no version", s)
	}
	if err != nil {
		return "", "", usagef("%s: %v (want NAME@VERSION)", flag, err)
	}
	return name, version, nil
}

// findRelease looks a published release up in the bucket and verifies it: a rollout may only
// name a release devices will accept, whose module is there.
func findRelease(ctx context.Context, bucket *publish.Bucket, v *signing.Verifier, name, version string) (signing.ReleaseRef, error) {
	entries, err := bucket.List(ctx, name, v)
	if err != nil {
		return signing.ReleaseRef{}, opError{"s3", err}
	}
	for _, e := range entries {
		if e.Name != name || e.Version != version {
			continue
		}
		if e.Problem != "" {
			return signing.ReleaseRef{}, opError{"release", fmt.Errorf("%s@%s in s3://%s: %s", name, version, bucket.Name(), e.Problem)}
		}
		return signing.ReleaseRef{Name: name, Version: version, SHA256: e.SHA256, Size: e.Size}, nil
	}
	return signing.ReleaseRef{}, opError{"not-found", fmt.Errorf("%s@%s is not published in s3://%s (wasmfleet publish it first)", name, version, bucket.Name())}
}

func rolloutStart(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "rollout start", rolloutSynopsis)
	release := fs.String("release", "", "the release to roll out, NAME@VERSION (published, see wasmfleet releases)")
	group := fs.String("group", "", "the device group")
	wavesFlag := fs.String("waves", "1,10,50,100", "percentages of the group, one wave each, increasing, the last 100")
	soak := fs.Duration("soak", rollout.DefaultSoak, "how long a wave that passed is watched before the next opens")
	maxFailure := fs.String("max-failure", "5%", "abort when more than this share of the devices that reported failed (5% or 0.05)")
	minDevices := fs.Int("min-devices", rollout.DefaultMinDevices, "devices that must have reported before the failure share can abort")
	timeout := fs.Duration("timeout", rollout.DefaultTimeout, "how long a device of a wave may stay silent before it counts as failed")
	previous := fs.String("previous", "", "what the group runs now, NAME@VERSION (default: read from the group's current desired state)")
	isNew := fs.Bool("new", false, "the module is new to the group: there is nothing to go back to, and an abort removes it")
	id := fs.String("id", "", "the rollout's id (default: made from the time)")
	actor := fs.String("actor", defaultActor(), "who starts it, for the audit record")
	trustPath := fs.String("trust", "", "trust file the releases and the current desired state are verified with (default: the bucket's trust/root.json)")
	wait := fs.Duration("wait", 2*time.Second, "how long to wait for the group's retained desired state on the broker")
	s3 := addS3Flags(fs)
	mf := addMQTTFlags(fs)
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 0 || *release == "" || *group == "" {
		return usagef("rollout start needs --release NAME@VERSION and --group G (usage: wasmfleet rollout %s)", strings.SplitN(rolloutSynopsis, "\n", 2)[0])
	}
	if *previous != "" && *isNew {
		return usagef("--previous and --new exclude each other")
	}
	name, version, err := parseRef("--release", *release)
	if err != nil {
		return err
	}
	waves, err := rollout.ParseWaves(*wavesFlag)
	if err != nil {
		return usagef("--waves: %v", err)
	}
	ratio, err := rollout.ParseRatio(*maxFailure)
	if err != nil {
		return usagef("--max-failure: %v", err)
	}
	if *soak < 0 || *timeout <= 0 || *minDevices < 0 || *wait <= 0 {
		return usagef("--soak and --min-devices must not be negative, --timeout and --wait must be positive")
	}
	var prevName, prevVersion string
	if *previous != "" {
		if prevName, prevVersion, err = parseRef("--previous", *previous); err != nil {
			return err
		}
		if prevName != name {
			return usagef("--previous %s is another module than --release %s", *previous, *release)
		}
	}

	trust, err := loadTrust(ctx, env, *trustPath, s3)
	if err != nil {
		return err
	}
	v := &signing.Verifier{Trust: trust}
	bucket, err := s3.open(env)
	if err != nil {
		return err
	}
	store, err := rolloutStore(s3)
	if err != nil {
		return err
	}
	ref, err := findRelease(ctx, bucket, v, name, version)
	if err != nil {
		return err
	}
	spec := rollout.Spec{ID: *id, Release: ref, Group: *group, Waves: waves, Soak: *soak, MaxFailure: ratio,
		MinDevices: *minDevices, Timeout: *timeout, Actor: *actor}
	if prevName != "" {
		p, err := findRelease(ctx, bucket, v, prevName, prevVersion)
		if err != nil {
			return err
		}
		spec.Previous = &p
	}

	// The group's current desired state: the retained message when there is a broker (what
	// the devices follow), else, or when the broker holds none, what the group's last
	// rollout signed.
	var from string
	if strings.TrimSpace(*mf.brokers) != "" {
		c, err := mf.connect(ctx)
		if err != nil {
			return err
		}
		spec.Current, err = controller.CurrentDesired(ctx, c, report.Topics{Prefix: *mf.prefix}, *group, v, *wait)
		c.Disconnect(100)
		from = "the broker's retained desired state"
		if err != nil && !errors.Is(err, controller.ErrNoDesired) {
			return refusedOr("mqtt", err)
		}
	}
	if spec.Current == nil {
		spec.Current, _, err = controller.LatestDesired(ctx, store, *group, v)
		if from == "" {
			from = "the desired state of the group's last rollout in s3"
		} else {
			from += " and the group's last rollout in s3"
		}
		if err != nil && !errors.Is(err, controller.ErrNoDesired) {
			return refusedOr("s3", err)
		}
	}
	var cur *signing.ModuleTarget
	if spec.Current != nil {
		for i, m := range spec.Current.Modules {
			if m.Release.Name == name {
				cur = &spec.Current.Modules[i]
			}
		}
	}
	switch {
	case spec.Previous == nil && !*isNew && cur == nil:
		what := "group " + *group + " has no desired state"
		if spec.Current != nil {
			what = fmt.Sprintf("the desired state of group %s (sequence %d) does not name %s", *group, spec.Current.Sequence, name)
		}
		return usagef("%s (read from %s): give --previous NAME@VERSION (what the devices run), or --new if the module is new to the group (an abort then removes it)", what, from)
	case *isNew && cur != nil:
		return usagef("--new, but the desired state of group %s already names %s %s", *group, name, cur.Release.Version)
	case spec.Previous != nil && cur != nil && cur.WavePercent == 100 && cur.Release != *spec.Previous:
		fmt.Fprintf(env.Stderr, "note: group %s's desired state names %s %s; going back to --previous %s on abort as asked\n",
			*group, name, cur.Release.Version, spec.Previous.Version)
	}

	ctl, err := operatorController(store)
	if err != nil {
		return err
	}
	r, err := ctl.Start(ctx, spec)
	if err != nil {
		return rolloutError(err)
	}
	prev := "nothing (new to the group: an abort removes it)"
	if r.Previous != nil {
		prev = r.Previous.Version
	}
	fmt.Fprintf(env.Stdout, "started rollout %s: %s %s over %s in group %s\n", r.ID, r.Release.Name, r.Release.Version, prev, r.Group)
	fmt.Fprintf(env.Stdout, "waves %s, soak %s, abort above %s failed once %d reported, silent after %s\n",
		wavesString(r.Waves), time.Duration(r.Soak), pct(r.MaxFailure), r.MinDevices, time.Duration(r.Timeout))
	fmt.Fprintf(env.Stdout, "the controller (wasmfleet serve) publishes wave 1 next; follow it with: wasmfleet rollout status %s --watch\n", r.ID)
	return nil
}

// refusedOr is refused for signing refusals, else opError{kind}.
func refusedOr(kind string, err error) error {
	if signing.KindOf(err) != nil {
		return refused(err)
	}
	return opError{kind, err}
}

func rolloutOperate(ctx context.Context, env *Env, op string, args []string) error {
	fs := newFlags(env, "rollout "+op, rolloutSynopsis)
	actor := fs.String("actor", defaultActor(), "who asks, for the audit record")
	var reason *string
	if op == "abort" {
		reason = fs.String("reason", "", "why, for the rollout document and the audit record")
	}
	s3 := addS3Flags(fs)
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("rollout %s needs one rollout ID", op)
	}
	store, err := rolloutStore(s3)
	if err != nil {
		return err
	}
	ctl, err := operatorController(store)
	if err != nil {
		return err
	}
	id := fs.Arg(0)
	before, err := ctl.Get(ctx, id)
	if err != nil {
		return rolloutError(err)
	}
	var r *rollout.Rollout
	switch op {
	case "pause":
		r, err = ctl.Pause(ctx, id, *actor)
	case "resume":
		r, err = ctl.Resume(ctx, id, *actor)
	case "abort":
		r, err = ctl.Abort(ctx, id, *actor, *reason)
	}
	if err != nil {
		return rolloutError(err)
	}
	if r.Last.Step == before.Last.Step {
		fmt.Fprintf(env.Stdout, "rollout %s is already %s\n", r.ID, r.State)
		return nil
	}
	fmt.Fprintf(env.Stdout, "rollout %s: %s -> %s (wave %d of %d, %g%%)\n", r.ID, r.Last.From, r.State, r.Wave+1, len(r.Waves), r.Waves[r.Wave])
	switch r.State {
	case rollout.Aborted:
		back := "removes " + r.Release.Name + " from every device of the group"
		if r.Previous != nil {
			back = "sends every device of the group back to " + r.Previous.Name + " " + r.Previous.Version
		}
		fmt.Fprintf(env.Stdout, "the controller %s next; reason recorded: %s\n", back, r.AbortReason)
	case rollout.Paused:
		fmt.Fprintln(env.Stdout, "no further wave opens until it is resumed; failures are still counted and still abort")
	}
	return nil
}

func rolloutList(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "rollout list", rolloutSynopsis)
	group := fs.String("group", "", "only rollouts of this group")
	asJSON := fs.Bool("json", false, "print a JSON array of the rollout documents")
	s3 := addS3Flags(fs)
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("rollout list takes no arguments")
	}
	store, err := rolloutStore(s3)
	if err != nil {
		return err
	}
	ctl, err := operatorController(store)
	if err != nil {
		return err
	}
	all, err := ctl.List(ctx)
	if err != nil {
		return rolloutError(err)
	}
	var rs []*rollout.Rollout
	for _, r := range all {
		if *group == "" || r.Group == *group {
			rs = append(rs, r)
		}
	}
	slices.SortStableFunc(rs, func(a, b *rollout.Rollout) int { return a.Created.Compare(b.Created) })
	if *asJSON {
		if rs == nil {
			rs = []*rollout.Rollout{}
		}
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rs)
	}
	if len(rs) == 0 {
		fmt.Fprintf(env.Stderr, "no rollouts in s3://%s/%s\n", store.Bucket(), objects.RolloutsPrefix)
		return nil
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tGROUP\tMODULE\tVERSION\tFROM\tSTATE\tWAVE\tUPDATED")
	for _, r := range rs {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ID, r.Group, r.Release.Name, r.Release.Version, previousVersion(r),
			r.State, waveString(r), r.Updated.UTC().Format(time.RFC3339))
	}
	return tw.Flush()
}

func previousVersion(r *rollout.Rollout) string {
	if r.Previous == nil {
		return "-"
	}
	return r.Previous.Version
}

func waveString(r *rollout.Rollout) string {
	return fmt.Sprintf("%d/%d (%g%%)", r.Wave+1, len(r.Waves), r.Waves[r.Wave])
}

func wavesString(w []float64) string {
	s := make([]string, len(w))
	for i, p := range w {
		s[i] = fmt.Sprintf("%g%%", p)
	}
	return strings.Join(s, ",")
}

func pct(ratio float64) string { return fmt.Sprintf("%g%%", ratio*100) }

// statusView is what `rollout status` shows (and prints as JSON with --json).
type statusView struct {
	Rollout *rollout.Rollout      `json:"rollout"`
	Audit   []rollout.AuditRecord `json:"audit"`
	// Live is the current wave's tally from the devices' reports (with a broker).
	Live    *rollout.Tally `json:"live,omitempty"`
	Devices int            `json:"devices_known,omitempty"`
	Waves   []waveView     `json:"waves"`
	version string         // what --watch compares to decide whether to print again
}

// waveView is one wave's line.
type waveView struct {
	Wave    int            `json:"wave"`
	Percent float64        `json:"percent"`
	State   string         `json:"state"`
	Tally   *rollout.Tally `json:"tally,omitempty"`
	// Live: the tally is of the devices' reports now, not of a recorded transition.
	Live bool `json:"live,omitempty"`
}

func rolloutStatus(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "rollout status", rolloutSynopsis)
	watch := fs.Bool("watch", false, "print again whenever something changes, until the rollout is over (exit 0 completed, 2 aborted)")
	interval := fs.Duration("interval", 2*time.Second, "how often --watch reads the rollout")
	asJSON := fs.Bool("json", false, "print JSON")
	live := fs.Bool("live", true, "with a broker (MQTT flags), tally the current wave from the devices' retained statuses and events")
	idle := fs.Duration("idle", registry.DefaultIdle, "with a broker: the statuses are all in once none has arrived for this long")
	s3 := addS3Flags(fs)
	mf := addMQTTFlags(fs)
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("rollout status needs one rollout ID")
	}
	if *interval <= 0 || *idle <= 0 {
		return usagef("--interval and --idle must be positive")
	}
	id := fs.Arg(0)
	store, err := rolloutStore(s3)
	if err != nil {
		return err
	}
	ctl, err := operatorController(store)
	if err != nil {
		return err
	}

	var tracker *rollout.Tracker
	if *live && strings.TrimSpace(*mf.brokers) != "" {
		c, err := mf.connect(ctx)
		if err != nil {
			return err
		}
		defer c.Disconnect(100)
		tracker = rollout.NewTracker(nil)
		feed := controller.NewFeed(report.Topics{Prefix: *mf.prefix}, tracker)
		if err := feed.Subscribe(ctx, c); err != nil {
			return opError{"mqtt", err}
		}
		if _, err := feed.WaitQuiet(ctx, *idle, registry.DefaultMax); err != nil {
			return err
		}
	}

	audited := map[uint64]rollout.AuditRecord{}
	last := ""
	for {
		v, err := readStatus(ctx, ctl, store, id, tracker, audited)
		if err != nil {
			return rolloutError(err)
		}
		if v.version != last {
			if *asJSON {
				enc := json.NewEncoder(env.Stdout)
				enc.SetIndent("", "  ")
				if err := enc.Encode(v); err != nil {
					return err
				}
			} else {
				if last != "" {
					fmt.Fprintln(env.Stdout)
				}
				printStatus(env.Stdout, v, time.Now())
			}
			last = v.version
		}
		r := v.Rollout
		if !*watch || (r.State.Final() && r.Published) {
			if *watch && r.State == rollout.Aborted {
				return opError{"aborted", fmt.Errorf("rollout %s: %s", r.ID, r.AbortReason)}
			}
			return nil
		}
		t := time.NewTimer(*interval)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// readStatus reads the rollout, the audit records not read yet, and tallies the live wave.
func readStatus(ctx context.Context, ctl *rollout.Controller, store rollout.Store, id string, tracker *rollout.Tracker, audited map[uint64]rollout.AuditRecord) (*statusView, error) {
	r, err := ctl.Get(ctx, id)
	if err != nil {
		return nil, err
	}
	keys, err := store.List(ctx, objects.AuditPrefix)
	if err != nil {
		return nil, err
	}
	for _, k := range keys {
		rid, step, err := rollout.ParseAuditKey(k)
		if err != nil || rid != id {
			continue
		}
		if _, ok := audited[step]; ok {
			continue
		}
		b, _, err := store.Get(ctx, k)
		if err != nil {
			return nil, err
		}
		var rec rollout.AuditRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("audit record %s: %w", k, err)
		}
		audited[step] = rec
	}
	v := &statusView{Rollout: r}
	steps := make([]uint64, 0, len(audited))
	for s := range audited {
		steps = append(steps, s)
	}
	slices.Sort(steps)
	for _, s := range steps {
		v.Audit = append(v.Audit, audited[s])
	}
	if tracker != nil && !r.WaveStarted.IsZero() {
		devs := tracker.Devices(r.Group)
		t := rollout.Evaluate(r, time.Now(), devs)
		v.Live, v.Devices = &t, len(devs)
	}
	v.Waves = wavesOf(r, v.Audit, v.Live)
	b, _ := json.Marshal(struct {
		S    rollout.State
		W    int
		Step uint64
		P    bool
		L    *rollout.Tally
	}{r.State, r.Wave, r.Last.Step, r.Published, v.Live})
	v.version = string(b)
	return v, nil
}

// wavesOf says where each wave is: passed (with the tally it passed with), the current one
// (live, or as last recorded), waiting, or never opened.
func wavesOf(r *rollout.Rollout, audit []rollout.AuditRecord, live *rollout.Tally) []waveView {
	out := make([]waveView, len(r.Waves))
	for i, p := range r.Waves {
		w := waveView{Wave: i + 1, Percent: p}
		switch {
		case i < r.Wave:
			w.State = "passed"
		case i == r.Wave:
			w.State = string(r.State)
			if r.State == rollout.Aborted {
				w.State = "aborted here"
			}
		case r.State.Final():
			w.State = "never opened"
		default:
			w.State = "waiting"
		}
		for _, a := range audit {
			if a.Tally != nil && a.Wave == i && (a.To == rollout.Soaking || a.To == rollout.Aborted && a.Tally.Wave == i) {
				t := *a.Tally
				w.Tally = &t
			}
		}
		if i == r.Wave && live != nil && !r.Aborted() {
			w.Tally, w.Live = live, true
		}
		out[i] = w
	}
	return out
}

func printStatus(w io.Writer, v *statusView, now time.Time) {
	r := v.Rollout
	prev := "nothing"
	if r.Previous != nil {
		prev = r.Previous.Version
	}
	fmt.Fprintf(w, "rollout %s: %s %s over %s in group %s\n", r.ID, r.Release.Name, r.Release.Version, prev, r.Group)
	state := fmt.Sprintf("%s, wave %d of %d (%g%%)", r.State, r.Wave+1, len(r.Waves), r.Waves[r.Wave])
	switch r.State {
	case rollout.Soaking:
		state += fmt.Sprintf(", soaking until %s (%s left)", r.SoakUntil.UTC().Format(time.RFC3339), max(r.SoakUntil.Sub(now), 0).Round(time.Second))
	case rollout.Aborted:
		back := "removing " + r.Release.Name + " from every device"
		if r.Previous != nil {
			back = "every device back to " + r.Previous.Version
		}
		if r.Published {
			state += ": " + back + " (published)"
		} else {
			state += ": " + back + " (the controller has not published it yet)"
		}
	}
	fmt.Fprintf(w, "state:   %s\n", state)
	if r.AbortReason != "" {
		fmt.Fprintf(w, "aborted: %s\n", r.AbortReason)
	}
	fmt.Fprintf(w, "policy:  waves %s, soak %s, abort above %s failed once %d reported, silent after %s\n",
		wavesString(r.Waves), time.Duration(r.Soak), pct(r.MaxFailure), r.MinDevices, time.Duration(r.Timeout))
	desired := "not signed yet"
	if r.Desired != nil {
		desired = fmt.Sprintf("sequence %d, ", r.Sequence)
		if r.Published {
			desired += "published"
			if !r.WaveStarted.IsZero() {
				desired += " " + r.WaveStarted.UTC().Format(time.RFC3339)
			}
		} else {
			desired += "signed, not published yet"
		}
	}
	fmt.Fprintf(w, "desired: %s\n", desired)
	if r.Owner != "" {
		fmt.Fprintf(w, "driver:  %s (lease until %s)\n", r.Owner, r.LeaseUntil.UTC().Format(time.RFC3339))
	}

	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "WAVE\tPERCENT\tSTATE\tDEVICES\tHEALTHY\tFAILED\tSILENT\tPENDING")
	for _, wv := range v.Waves {
		cells := "-\t-\t-\t-\t-"
		if t := wv.Tally; t != nil {
			cells = fmt.Sprintf("%d\t%d\t%d\t%d\t%d", t.Expected, t.Healthy, t.Failed, t.Silent, t.Pending)
		}
		state := wv.State
		if wv.Live {
			state += " (live)"
		}
		fmt.Fprintf(tw, "%d\t%g%%\t%s\t%s\n", wv.Wave, wv.Percent, state, cells)
	}
	tw.Flush()
	if r.Aborted() && v.Live != nil {
		fmt.Fprintf(w, "revert:  %d of %d devices of the group back on %s (%d pending, %d failed or silent)\n",
			v.Live.Healthy, v.Live.Expected, prev, v.Live.Pending, v.Live.Failed+v.Live.Silent)
	}
	var fails []rollout.Failure
	switch {
	case v.Live != nil:
		fails = v.Live.Failures
	case r.Last.Tally != nil:
		fails = r.Last.Tally.Failures
	}
	for _, f := range fails {
		fmt.Fprintf(w, "  failed: %s: %s\n", f.Device, truncate(oneLine(f.Reason), 160))
	}
	if len(v.Audit) > 0 {
		fmt.Fprintln(w, "history:")
		for _, a := range v.Audit {
			fmt.Fprintf(w, "  %d  %s  %-9s wave %d  %s: %s\n", a.Step, a.Time.UTC().Format(time.RFC3339), a.To, a.Wave+1, a.Actor, truncate(oneLine(a.Reason), 200))
		}
	}
}

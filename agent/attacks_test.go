package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/modules"
	"github.com/wasmfleet/wasmfleet/protocol/objects"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
)

// The device, group and module every attack of TestTrustAttacksAreRefused is aimed at.
const (
	attackDevice = "pi-3"
	attackGroup  = "kitchen"
	attackModule = "threshold-alert"
)

// TestTrustAttacksAreRefused is scenario 3: each trust attack of the signing issue, delivered
// for real (desired state on the broker, releases and modules in S3), is refused and
// reported with its own error kind, and the running version is untouched: the retained
// status still shows it active with the same digest, and it still turns a reading above the
// threshold into an alert. The agent never exits and every event it publishes is well-formed.
//
// Attacks on the desired state end in a `refused` event; attacks on a release or its module
// are found when the agent installs what a (legitimate) desired state names, and end in a
// `failed` event. After each of those the group's desired state is set back to the running
// release, so that every attack starts from the same place.
func TestTrustAttacksAreRefused(t *testing.T) {
	began := time.Now()
	f := newFleet(t)
	manifest, wasm := example(t, "threshold-alert", "threshold-alert.wasm")
	w := &attackWorld{f: f, manifest: manifest, wasm: wasm}
	w.good = f.publishRelease(manifest, wasm)
	w.running = w.good
	// A validly signed release that forged desired states name: if one of them were
	// accepted, the agent would install it, which the checks catch.
	evilWasm := wasmVariant(wasm, "the release forged desired states name")
	w.evil = f.publishRelease(w.manifestAt("1.9.0"), evilWasm)

	first := f.desiredDoc(attackGroup, everyone(w.good, "r1"))
	w.firstEnv = f.publishDesired(first)
	w.applied, w.appliedEnv = first.Sequence, w.firstEnv
	w.exited = f.startWatchedAgent(f.agentConfig(attackDevice, attackGroup))
	f.waitEvent(attackDevice, report.EventActivated, "1.0.0")
	w.untouched(t, nil)
	t.Logf("agent running 1.0.0 after %v", time.Since(began).Round(time.Millisecond))

	for _, a := range w.attacks() {
		ok := t.Run(a.name, func(t *testing.T) {
			defer w.useT(t)()
			start := time.Now()
			from := len(f.events(attackDevice))
			want := a.deliver(t)
			ev := w.expect(t, from, want)
			if want.kind == report.EventFailed {
				// The status reports the failure (at least 200 ms later: the reporter
				// coalesces changes); then the desired state goes back to what runs.
				w.waitStatus(t, func(s *report.Status) bool {
					return !s.Time.Before(ev.Time) && strings.Contains(s.LastError, ev.Reason)
				}, "reporting the failure")
				w.heal(t)
				w.refusedOnce(t, from, want, time.Since(start))
			}
			w.untouched(t, &ev)
			t.Logf("%s %q after %v", ev.Kind, ev.ErrorKind, time.Since(start).Round(time.Millisecond))
		})
		if !ok && w.exited() != nil {
			t.Fatalf("the agent exited: %v", w.exited())
		}
	}

	// The explicit rollback flag: a desired state that marks the rollback is obeyed.
	t.Run("rollback with the flag, to the release refused without it", func(t *testing.T) {
		defer w.useT(t)()
		if w.refusedRollback.Name == "" {
			t.Fatal("the rollback attack did not run")
		}
		// The controller fixes its mistake: a newer desired state, the same release, the
		// rollback marked. The earlier refusal was about the missing flag, not the release.
		w.rollbackTo(t, w.refusedRollback, "r-back-fixed", 10*time.Second)
	})
	t.Run("rollback with the flag is accepted", func(t *testing.T) {
		defer w.useT(t)()
		v := wasmVariant(wasm, "rollback target 0.8.0")
		env, ref := w.signRelease(t, w.manifestAt("0.8.0"), v)
		w.upload(t, ref, env, v)
		w.rollbackTo(t, ref, "r-back", 30*time.Second)
	})

	// The broker's retained copy of the applied document is not an attack: it is ignored
	// without a report (the agent saw it again in the replay attack).
	for _, e := range f.events(attackDevice) {
		for _, seq := range w.silent {
			if e.Kind == report.EventRefused && strings.Contains(e.Reason, fmt.Sprintf("has sequence %d, not above %d", seq, seq)) {
				t.Errorf("the agent refused the retained copy of the desired state it had applied (sequence %d): %+v", seq, e)
			}
		}
	}
	w.checkEvents(t)
	if err := w.exited(); err != nil {
		t.Fatalf("the agent exited: %v", err)
	}
	t.Logf("%d attacks in %v", len(w.attacks()), time.Since(began).Round(time.Millisecond))
}

// attackWorld is the fleet, the device's running release and the bookkeeping the attacks
// share.
type attackWorld struct {
	f        *fleet
	manifest string
	wasm     []byte

	good, evil signing.ReleaseRef
	running    signing.ReleaseRef // what the device should be running
	state      string             // its state in the status ("" means active)

	applied    uint64 // the group's applied sequence
	appliedEnv []byte // and its envelope, as published
	firstEnv   []byte // the first desired state, applied and then superseded

	refusedRollback signing.ReleaseRef // the release the rollback attack named
	silent          []uint64           // sequences whose retained copy was sent again
	untyped         []string           // versions whose failure has no kind of its own
	readings        int
	exited          func() error
}

// attackOutcome is what the agent must report for an attack.
type attackOutcome struct {
	kind      string // report.EventRefused or report.EventFailed
	errorKind string // "" for any
	source    string // "group/kitchen" unless set
	reason    string // a part the reason must hold, when set
	// For failed: the release the desired state named.
	version, rollout string
	sequence         uint64
}

type trustAttack struct {
	name    string
	deliver func(t *testing.T) attackOutcome
}

func refusedAs(k *signing.Kind) attackOutcome {
	return attackOutcome{kind: report.EventRefused, errorKind: k.Error()}
}

// useT makes the fleet's helpers fail the subtest t; the returned func restores the parent.
func (w *attackWorld) useT(t *testing.T) func() {
	parent := w.f.t
	w.f.t = t
	return func() { w.f.t = parent }
}

func (w *attackWorld) manifestAt(version string) string {
	return strings.Replace(w.manifest, "version: 1.0.0", "version: "+version, 1)
}

// signRelease signs wasm with manifestYAML (by the release key unless signers are given)
// without uploading it, and returns the envelope and the ref that names it.
func (w *attackWorld) signRelease(t *testing.T, manifestYAML string, wasm []byte, signers ...signature.Signer) ([]byte, signing.ReleaseRef) {
	t.Helper()
	m, err := modules.Parse([]byte(manifestYAML))
	if err != nil {
		t.Fatal(err)
	}
	if len(signers) == 0 {
		signers = []signature.Signer{w.f.release}
	}
	env, err := signing.SignRelease(context.Background(), m, bytes.NewReader(wasm), signers...)
	if err != nil {
		t.Fatal(err)
	}
	sha, size, err := signing.HashModule(bytes.NewReader(wasm))
	if err != nil {
		t.Fatal(err)
	}
	return env, signing.ReleaseRef{Name: m.Name, Version: m.Version, SHA256: sha, Size: size}
}

// upload puts a release envelope and a module where the agent fetches ref from.
func (w *attackWorld) upload(t *testing.T, ref signing.ReleaseRef, envelope, wasm []byte) {
	t.Helper()
	rk, err := objects.ReleaseKey(ref.Name, ref.Version)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := objects.ModuleKey(ref.Name, ref.Version)
	if err != nil {
		t.Fatal(err)
	}
	w.f.put(mk, wasm)
	w.f.put(rk, envelope)
}

// signedRelease signs a fresh variant of the module as version, without uploading it.
func (w *attackWorld) signedRelease(t *testing.T, version string) ([]byte, []byte, signing.ReleaseRef) {
	t.Helper()
	v := wasmVariant(w.wasm, "release "+version)
	env, ref := w.signRelease(t, w.manifestAt(version), v)
	return env, v, ref
}

// target publishes a legitimate desired state naming mt, and returns the failure the agent
// must report when it installs it: of kind k (nil: any kind).
func (w *attackWorld) target(t *testing.T, mt signing.ModuleTarget, k *signing.Kind) attackOutcome {
	t.Helper()
	d := w.f.desiredDoc(attackGroup, mt)
	w.appliedEnv = w.f.publishDesired(d)
	w.applied = d.Sequence
	o := attackOutcome{kind: report.EventFailed, version: mt.Release.Version, rollout: mt.Rollout, sequence: d.Sequence}
	if k != nil {
		o.errorKind = k.Error()
	}
	return o
}

// heal sets the group's desired state back to the running release and waits until it is
// applied.
func (w *attackWorld) heal(t *testing.T) {
	t.Helper()
	d := w.f.desiredDoc(attackGroup, everyone(w.running, "heal"))
	env := w.f.publishDesired(d)
	w.applied, w.appliedEnv = d.Sequence, env
	w.waitStatus(t, func(s *report.Status) bool { return s.Applied["group/"+attackGroup] == d.Sequence },
		fmt.Sprintf("applying sequence %d", d.Sequence))
}

// forged is the next desired state of the group, naming the evil release.
func (w *attackWorld) forged() *signing.Desired {
	return w.f.desiredDoc(attackGroup, everyone(w.evil, "forged"))
}

// sign makes a DSSE envelope of payload with payloadType.
func (w *attackWorld) sign(t *testing.T, payloadType string, payload []byte, signers ...signature.Signer) []byte {
	t.Helper()
	env, err := signing.Sign(context.Background(), payloadType, payload, signers...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// signDesired signs d as the desired-state payload type (by the rollout key unless signers
// are given) without checking it.
func (w *attackWorld) signDesired(t *testing.T, d *signing.Desired, signers ...signature.Signer) []byte {
	t.Helper()
	if len(signers) == 0 {
		signers = []signature.Signer{w.f.rollout}
	}
	return w.sign(t, signing.DesiredPayloadType, mustJSON(t, d), signers...)
}

// editEnvelope decodes an envelope, lets change alter it, and encodes it again.
func editEnvelope(t *testing.T, envelope []byte, change func(*signing.Envelope)) []byte {
	t.Helper()
	e, err := signing.ParseEnvelope(envelope)
	if err != nil {
		t.Fatal(err)
	}
	change(e)
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// mustReplace is bytes.Replace that insists on a change.
func mustReplace(t *testing.T, b []byte, old, new string) []byte {
	t.Helper()
	if !bytes.Contains(b, []byte(old)) {
		t.Fatalf("%q not found in %s", old, b)
	}
	return bytes.ReplaceAll(b, []byte(old), []byte(new))
}

func (w *attackWorld) onGroupTopic(t *testing.T, payload []byte) {
	t.Helper()
	w.f.publishRaw(report.Topics{}.GroupDesired(attackGroup), payload, true)
}

func (w *attackWorld) onDeviceTopic(t *testing.T, payload []byte) {
	t.Helper()
	w.f.publishRaw(report.Topics{}.DeviceDesired(attackDevice), payload, true)
}

// attacks is the table of scenario 3: first the attacks on releases and modules, then those
// on the desired state.
func (w *attackWorld) attacks() []trustAttack {
	f := w.f
	ctx := context.Background()
	return []trustAttack{
		// Releases and modules in S3.
		{"module.wasm tampered in S3 (same size, other bytes)", func(t *testing.T) attackOutcome {
			env, v, ref := w.signedRelease(t, "1.1.0")
			tampered := bytes.Clone(v)
			tampered[len(tampered)-1] ^= 0x20 // still a valid module, just not the signed one
			w.upload(t, ref, env, tampered)
			return w.target(t, everyone(ref, "r-tampered"), signing.ErrDigest)
		}},
		{"endless data: module.wasm longer than the signed size", func(t *testing.T) attackOutcome {
			env, v, ref := w.signedRelease(t, "1.1.1")
			w.upload(t, ref, env, append(bytes.Clone(v), make([]byte, 64<<10)...))
			return w.target(t, everyone(ref, "r-endless"), signing.ErrTooLarge)
		}},
		{"mix-and-match: release of A with the (shorter) wasm of B", func(t *testing.T) attackOutcome {
			env, _, ref := w.signedRelease(t, "1.1.2")
			w.upload(t, ref, env, wasmVariant(w.wasm, "B"))
			return w.target(t, everyone(ref, "r-mix-wasm"), signing.ErrDigest)
		}},
		{"mix-and-match: desired names release B, S3 holds the release of module A for that version", func(t *testing.T) attackOutcome {
			a, b := wasmVariant(w.wasm, "module A"), wasmVariant(w.wasm, "module B, the one the desired state names")
			envA, _ := w.signRelease(t, w.manifestAt("1.2.0"), a)
			_, refB := w.signRelease(t, w.manifestAt("1.2.0"), b)
			w.upload(t, refB, envA, b)
			return w.target(t, everyone(refB, "r-mix-release"), signing.ErrMixAndMatch)
		}},
		{"mix-and-match: desired digest differs from the signed release", func(t *testing.T) attackOutcome {
			env, v, ref := w.signedRelease(t, "1.3.0")
			w.upload(t, ref, env, v)
			named := ref
			named.SHA256 = w.good.SHA256
			return w.target(t, everyone(named, "r-mix-digest"), signing.ErrMixAndMatch)
		}},
		{"mix-and-match: desired size differs from the signed release", func(t *testing.T) attackOutcome {
			env, v, ref := w.signedRelease(t, "1.3.1")
			w.upload(t, ref, env, v)
			named := ref
			named.Size++
			return w.target(t, everyone(named, "r-mix-size"), signing.ErrMixAndMatch)
		}},
		{"mix-and-match: another module's release under this module's name", func(t *testing.T) attackOutcome {
			em, ew := example(t, "echo", "echo.wasm")
			env, ref := w.signRelease(t, strings.Replace(em, "version: 1.0.0", "version: 1.4.0", 1), ew)
			ref.Name = attackModule
			w.upload(t, ref, env, ew)
			return w.target(t, everyone(ref, "r-mix-module"), signing.ErrMixAndMatch)
		}},
		{"release signed by a key without a role (stranger)", func(t *testing.T) attackOutcome {
			v := wasmVariant(w.wasm, "release 1.5.0")
			env, ref := w.signRelease(t, w.manifestAt("1.5.0"), v, f.stranger)
			w.upload(t, ref, env, v)
			return w.target(t, everyone(ref, "r-stranger"), signing.ErrUnknownKey)
		}},
		{"release signed by the rollout key (a stolen rollout key cannot run new code)", func(t *testing.T) attackOutcome {
			v := wasmVariant(w.wasm, "release 1.5.1")
			env, ref := w.signRelease(t, w.manifestAt("1.5.1"), v, f.rollout)
			w.upload(t, ref, env, v)
			return w.target(t, everyone(ref, "r-rollout-key"), signing.ErrUnknownKey)
		}},
		{"release with a corrupt signature", func(t *testing.T) attackOutcome {
			env, v, ref := w.signedRelease(t, "1.5.2")
			env = editEnvelope(t, env, func(e *signing.Envelope) { e.Signatures[0].Sig[len(e.Signatures[0].Sig)/2] ^= 0xff })
			w.upload(t, ref, env, v)
			return w.target(t, everyone(ref, "r-corrupt-sig"), signing.ErrBadSignature)
		}},
		{"release envelope with the desired-state payload type", func(t *testing.T) attackOutcome {
			v := wasmVariant(w.wasm, "release 1.6.0")
			m, err := modules.Parse([]byte(w.manifestAt("1.6.0")))
			if err != nil {
				t.Fatal(err)
			}
			sha, size, _ := signing.HashModule(bytes.NewReader(v))
			st, err := signing.ReleaseStatement(m, sha, size)
			if err != nil {
				t.Fatal(err)
			}
			env, err := signing.Sign(ctx, signing.DesiredPayloadType, st, f.release)
			if err != nil {
				t.Fatal(err)
			}
			ref := signing.ReleaseRef{Name: m.Name, Version: m.Version, SHA256: sha, Size: size}
			w.upload(t, ref, env, v)
			return w.target(t, everyone(ref, "r-payload-type"), signing.ErrPayloadType)
		}},
		{"release statement of another predicate type", func(t *testing.T) attackOutcome {
			v := wasmVariant(w.wasm, "release 1.6.1")
			m, err := modules.Parse([]byte(w.manifestAt("1.6.1")))
			if err != nil {
				t.Fatal(err)
			}
			sha, size, _ := signing.HashModule(bytes.NewReader(v))
			st, err := signing.ReleaseStatement(m, sha, size)
			if err != nil {
				t.Fatal(err)
			}
			st = mustReplace(t, st, signing.ReleasePredicateType, "https://slsa.dev/provenance/v1")
			env := w.sign(t, signing.ReleasePayloadType, st, f.release)
			ref := signing.ReleaseRef{Name: m.Name, Version: m.Version, SHA256: sha, Size: size}
			w.upload(t, ref, env, v)
			return w.target(t, everyone(ref, "r-predicate"), signing.ErrPayloadType)
		}},
		{"release envelope that is not JSON", func(t *testing.T) attackOutcome {
			_, v, ref := w.signedRelease(t, "1.6.2")
			w.upload(t, ref, []byte("<html>not a release</html>"), v)
			return w.target(t, everyone(ref, "r-not-json"), signing.ErrMalformed)
		}},
		{"release envelope with a payload that is not base64", func(t *testing.T) attackOutcome {
			env, v, ref := w.signedRelease(t, "1.6.3")
			var raw map[string]any
			if err := json.Unmarshal(env, &raw); err != nil {
				t.Fatal(err)
			}
			raw["payload"] = "%%% not base64 %%%"
			w.upload(t, ref, mustJSON(t, raw), v)
			return w.target(t, everyone(ref, "r-bad-base64"), signing.ErrMalformed)
		}},
		{"tampered manifest: capabilities widened after signing", func(t *testing.T) attackOutcome {
			env, v, ref := w.signedRelease(t, "1.7.0")
			env = editEnvelope(t, env, func(e *signing.Envelope) {
				e.Payload = mustReplace(t, e.Payload, `"alerts/{device}/#"`, `"#"`)
			})
			w.upload(t, ref, env, v)
			return w.target(t, everyone(ref, "r-tampered-manifest"), signing.ErrBadSignature)
		}},
		{"release deleted from S3: the running version stays, the fetch is retried with backoff", func(t *testing.T) attackOutcome {
			_, _, ref := w.signedRelease(t, "1.8.0")            // signed, never uploaded
			return w.target(t, everyone(ref, "r-missing"), nil) // not a refusal: any kind will do
		}},
		{"rollback to a lower version without the rollback flag", func(t *testing.T) attackOutcome {
			env, v, ref := w.signedRelease(t, "0.9.0")
			w.upload(t, ref, env, v)
			w.refusedRollback = ref
			return w.target(t, everyone(ref, "r-rollback"), signing.ErrRollback)
		}},

		// Desired state on the broker.
		{"desired state signed by a key without a role (stranger)", func(t *testing.T) attackOutcome {
			w.onGroupTopic(t, w.signDesired(t, w.forged(), f.stranger))
			return refusedAs(signing.ErrUnknownKey)
		}},
		{"desired state signed by the release key", func(t *testing.T) attackOutcome {
			w.onGroupTopic(t, w.signDesired(t, w.forged(), f.release))
			return refusedAs(signing.ErrUnknownKey)
		}},
		{"desired state signed by the stranger, without a key id", func(t *testing.T) attackOutcome {
			env := editEnvelope(t, w.signDesired(t, w.forged(), f.stranger), func(e *signing.Envelope) { e.Signatures[0].KeyID = "" })
			w.onGroupTopic(t, env)
			return refusedAs(signing.ErrBadSignature)
		}},
		{"desired state changed after signing (another digest)", func(t *testing.T) attackOutcome {
			d := w.f.desiredDoc(attackGroup, everyone(w.good, "r-legit"))
			env := editEnvelope(t, w.signDesired(t, d), func(e *signing.Envelope) {
				e.Payload = mustReplace(t, e.Payload, w.good.SHA256, w.evil.SHA256)
			})
			w.onGroupTopic(t, env)
			return refusedAs(signing.ErrBadSignature)
		}},
		{"desired state with a corrupt rollout signature", func(t *testing.T) attackOutcome {
			env := editEnvelope(t, w.signDesired(t, w.forged()), func(e *signing.Envelope) { e.Signatures[0].Sig[8] ^= 0xff })
			w.onGroupTopic(t, env)
			return refusedAs(signing.ErrBadSignature)
		}},
		{"replay of an older applied desired state", func(t *testing.T) attackOutcome {
			// A newer document supersedes the first; the broker's retained copy of it comes
			// again (silently ignored), then the first one is replayed.
			w.heal(t)
			w.silent = append(w.silent, w.applied)
			w.onGroupTopic(t, w.appliedEnv)
			w.onGroupTopic(t, w.firstEnv)
			o := refusedAs(signing.ErrReplay)
			o.reason = "has sequence 1, not above"
			return o
		}},
		{"replay: a lower sequence than applied, another document", func(t *testing.T) attackOutcome {
			d := &signing.Desired{Target: signing.Target{Group: attackGroup}, Sequence: w.applied - 1,
				Expires: time.Now().Add(time.Hour), Modules: []signing.ModuleTarget{everyone(w.evil, "forged")}}
			w.onGroupTopic(t, w.signDesired(t, d))
			o := refusedAs(signing.ErrReplay)
			o.reason = fmt.Sprintf("has sequence %d, not above %d", w.applied-1, w.applied)
			return o
		}},
		{"replay: the applied sequence, another document", func(t *testing.T) attackOutcome {
			w.heal(t) // a sequence of its own, not the one whose retained copy came again
			d := &signing.Desired{Target: signing.Target{Group: attackGroup}, Sequence: w.applied,
				Expires: time.Now().Add(time.Hour), Modules: []signing.ModuleTarget{everyone(w.evil, "forged")}}
			w.onGroupTopic(t, w.signDesired(t, d))
			o := refusedAs(signing.ErrReplay)
			o.reason = fmt.Sprintf("has sequence %d, not above %d", w.applied, w.applied)
			return o
		}},
		{"expired desired state (freeze)", func(t *testing.T) attackOutcome {
			d := w.forged()
			d.Expires = time.Now().Add(-time.Minute)
			w.onGroupTopic(t, w.signDesired(t, d))
			return refusedAs(signing.ErrExpired)
		}},
		{"wrong target: another group's desired state on this group's topic", func(t *testing.T) attackOutcome {
			d := w.forged()
			d.Target = signing.Target{Group: "garage"}
			w.onGroupTopic(t, w.signDesired(t, d))
			return refusedAs(signing.ErrWrongTarget)
		}},
		{"wrong target: a device's desired state on the group's topic", func(t *testing.T) attackOutcome {
			d := w.forged()
			d.Target = signing.Target{Device: attackDevice}
			w.onGroupTopic(t, w.signDesired(t, d))
			return refusedAs(signing.ErrWrongTarget)
		}},
		{"wrong target: another device's desired state on this device's topic", func(t *testing.T) attackOutcome {
			d := w.forged()
			d.Target = signing.Target{Device: "pi-9"}
			w.onDeviceTopic(t, w.signDesired(t, d))
			o := refusedAs(signing.ErrWrongTarget)
			o.source = "device/" + attackDevice
			return o
		}},
		{"wrong target: the group's desired state on the device's topic", func(t *testing.T) attackOutcome {
			w.onDeviceTopic(t, w.signDesired(t, w.forged()))
			o := refusedAs(signing.ErrWrongTarget)
			o.source = "device/" + attackDevice
			return o
		}},
		{"desired state with the release payload type", func(t *testing.T) attackOutcome {
			w.onGroupTopic(t, w.sign(t, signing.ReleasePayloadType, mustJSON(t, w.forged()), f.rollout))
			return refusedAs(signing.ErrPayloadType)
		}},
		{"desired state with the trust-file payload type", func(t *testing.T) attackOutcome {
			w.onGroupTopic(t, w.sign(t, signing.TrustPayloadType, mustJSON(t, w.forged()), f.rollout))
			return refusedAs(signing.ErrPayloadType)
		}},
		{"malformed: not JSON", func(t *testing.T) attackOutcome {
			w.onGroupTopic(t, []byte("this is not a DSSE envelope"))
			return refusedAs(signing.ErrMalformed)
		}},
		{"malformed: truncated envelope", func(t *testing.T) attackOutcome {
			env := w.signDesired(t, w.forged())
			w.onGroupTopic(t, env[:len(env)/2])
			return refusedAs(signing.ErrMalformed)
		}},
		{"malformed: payload not base64", func(t *testing.T) attackOutcome {
			w.onGroupTopic(t, fmt.Appendf(nil, `{"payloadType":%q,"payload":"%%%% not base64 %%%%","signatures":[{"keyid":"","sig":"AAAA"}]}`,
				signing.DesiredPayloadType))
			return refusedAs(signing.ErrMalformed)
		}},
		{"malformed: signature not base64", func(t *testing.T) attackOutcome {
			var raw map[string]any
			if err := json.Unmarshal(w.signDesired(t, w.forged()), &raw); err != nil {
				t.Fatal(err)
			}
			raw["signatures"].([]any)[0].(map[string]any)["sig"] = "*** not base64 ***"
			w.onGroupTopic(t, mustJSON(t, raw))
			return refusedAs(signing.ErrMalformed)
		}},
		{"malformed: no signatures", func(t *testing.T) attackOutcome {
			var raw map[string]any
			if err := json.Unmarshal(w.signDesired(t, w.forged()), &raw); err != nil {
				t.Fatal(err)
			}
			raw["signatures"] = []any{}
			w.onGroupTopic(t, mustJSON(t, raw))
			return refusedAs(signing.ErrMalformed)
		}},
		{"malformed: an unknown field in the envelope", func(t *testing.T) attackOutcome {
			var raw map[string]any
			if err := json.Unmarshal(w.signDesired(t, w.forged()), &raw); err != nil {
				t.Fatal(err)
			}
			raw["note"] = "trust me"
			w.onGroupTopic(t, mustJSON(t, raw))
			return refusedAs(signing.ErrMalformed)
		}},
		{"malformed: a signed payload with an unknown field", func(t *testing.T) attackOutcome {
			var raw map[string]any
			if err := json.Unmarshal(mustJSON(t, w.forged()), &raw); err != nil {
				t.Fatal(err)
			}
			raw["skip_verification"] = true
			w.onGroupTopic(t, w.sign(t, signing.DesiredPayloadType, mustJSON(t, raw), f.rollout))
			return refusedAs(signing.ErrMalformed)
		}},
		{"invalid: a signed desired state that breaks the format's rules", func(t *testing.T) attackOutcome {
			d := w.forged()
			d.Modules[0].WavePercent = 250
			w.onGroupTopic(t, w.signDesired(t, d))
			return refusedAs(signing.ErrInvalid)
		}},
	}
}

// expect waits for the event an attack must cause (the first of its kind from source since
// event number from) and checks it and everything else the agent reported since.
func (w *attackWorld) expect(t *testing.T, from int, want attackOutcome) report.Event {
	t.Helper()
	if want.source == "" {
		want.source = "group/" + attackGroup
	}
	match := func(e report.Event) bool {
		if e.Kind != want.kind || e.Source != want.source {
			return false
		}
		if want.kind == report.EventFailed && (e.Module != attackModule || e.Version != want.version) {
			return false
		}
		return want.reason == "" || strings.Contains(e.Reason, want.reason)
	}
	var ev report.Event
	waitFor(t, 20*time.Second, func() bool {
		for _, e := range w.since(from) {
			if match(e) {
				ev = e
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf("a %s event from %s (%s %s); events since the attack:\n%s", want.kind, want.source, want.version,
			want.reason, describeAttackEvents(w.since(from)))
	})
	if want.errorKind == "" {
		w.untyped = append(w.untyped, want.version)
	} else if ev.ErrorKind != want.errorKind {
		t.Errorf("%s event has error_kind %q, want %q; reason: %s", ev.Kind, ev.ErrorKind, want.errorKind, ev.Reason)
	}
	if ev.Device != attackDevice || ev.Time.IsZero() || ev.Reason == "" {
		t.Errorf("%s event is missing its device, time or reason: %+v", ev.Kind, ev)
	}
	if want.kind == report.EventFailed && (ev.Rollout != want.rollout || ev.Sequence != want.sequence) {
		t.Errorf("failed event %+v does not name rollout %s, sequence %d", ev, want.rollout, want.sequence)
	}
	// Nothing the attack brought was trusted: no verification, activation or health verdict,
	// and no sign of the release forged desired states name.
	for _, e := range w.since(from) {
		switch {
		case e.Kind == report.EventVerified || e.Kind == report.EventActivated || e.Kind == report.EventHealthy ||
			e.Kind == report.EventRolledBack:
			t.Errorf("after the attack the agent reported %s: %+v", e.Kind, e)
		case e.Version == w.evil.Version:
			t.Errorf("the agent went for the release only forged desired states name: %+v", e)
		case e.Kind == report.EventRefused && !match(e):
			t.Errorf("another refusal than the attack's: %+v", e)
		}
	}
	return ev
}

// untouched checks that the device still runs what it ran, reports it (after ev, when
// given), and still handles events with it; and that the agent is still running.
func (w *attackWorld) untouched(t *testing.T, ev *report.Event) {
	t.Helper()
	s := w.waitStatus(t, func(s *report.Status) bool {
		m, ok := moduleStatus(s, attackModule)
		if !ok || m.State == report.StateDownloading {
			return false
		}
		if ev != nil && ev.Kind == report.EventFailed && m.Target != "" {
			return false // the desired state went back to what runs: the failed target goes
		}
		return ev == nil || (!s.Time.Before(ev.Time) && strings.Contains(s.LastError, ev.Reason))
	}, "reporting the refusal, then no target once the desired state is back on what runs")
	m, _ := moduleStatus(s, attackModule)
	state := w.state
	if state == "" {
		state = report.StateActive
	}
	if !s.Online || m.Version != w.running.Version || m.SHA256 != w.running.SHA256 || m.State != state {
		t.Errorf("status shows %s %s (sha256 %.12s) %s, online %v; want %s (sha256 %.12s) %s",
			m.Name, m.Version, m.SHA256, m.State, s.Online, w.running.Version, w.running.SHA256, state)
	}
	if got := s.Applied["group/"+attackGroup]; got != w.applied {
		t.Errorf("status shows sequence %d applied, want %d", got, w.applied)
	}
	if ev != nil && ev.Kind == report.EventFailed && m.Target != "" {
		t.Errorf("status target %q after the desired state went back to %s", m.Target, w.running.Version)
	}
	w.alertStillComesOut(t)
	if err := w.exited(); err != nil {
		t.Fatalf("the agent exited: %v", err)
	}
}

// alertStillComesOut sends a reading above the threshold and waits for its alert.
func (w *attackWorld) alertStillComesOut(t *testing.T) {
	t.Helper()
	w.readings++
	value := float64(40 + w.readings)
	w.f.publishRaw("sensors/"+attackDevice+"/temperature", fmt.Appendf(nil, `{"value": %g}`, value), false)
	waitFor(t, 10*time.Second, func() bool {
		for _, b := range w.f.messages("alerts/" + attackDevice + "/temperature") {
			var a alert
			if json.Unmarshal(b, &a) == nil && a.Value == value && a.Device == attackDevice {
				return true
			}
		}
		return false
	}, func() string { return fmt.Sprintf("an alert for the reading %g from %s", value, w.running.Version) })
}

// rollbackTo publishes a desired state that marks a rollback to ref, and checks that the
// agent installs and runs it.
func (w *attackWorld) rollbackTo(t *testing.T, ref signing.ReleaseRef, rollout string, timeout time.Duration) {
	t.Helper()
	from := len(w.f.events(attackDevice))
	d := w.f.desiredDoc(attackGroup, signing.ModuleTarget{Release: ref, Rollout: rollout, WavePercent: 100, Rollback: true})
	w.appliedEnv = w.f.publishDesired(d)
	w.applied = d.Sequence
	var ev report.Event
	waitFor(t, timeout, func() bool {
		for _, e := range w.since(from) {
			if e.Kind == report.EventActivated && e.Version == ref.Version {
				ev = e
				return true
			}
		}
		return false
	}, func() string {
		return fmt.Sprintf("the rollback to %s (sequence %d, rollback flag set) to be activated; events since:\n%s", ref.Version,
			d.Sequence, describeAttackEvents(w.since(from)))
	})
	for _, e := range w.since(from) {
		if e.Kind == report.EventFailed || e.Kind == report.EventRefused {
			t.Errorf("the rollback with the flag was refused: %+v", e)
		}
	}
	if ev.Rollout != rollout || ev.Sequence != d.Sequence || ev.Source != "group/"+attackGroup {
		t.Errorf("activated event %+v", ev)
	}
	// A release the fleet explicitly rolls back to is not judged by a health window: it is
	// active at once (the previous release is still kept until the next update is healthy).
	w.running, w.state = ref, report.StateActive
	s := w.waitStatus(t, func(s *report.Status) bool {
		m, _ := moduleStatus(s, attackModule)
		return m.Version == ref.Version && !s.Time.Before(ev.Time)
	}, "showing the rollback")
	m, _ := moduleStatus(s, attackModule)
	if m.SHA256 != ref.SHA256 || m.State != report.StateActive {
		t.Errorf("module status %+v after the rollback to %s", m, ref.Version)
	}
	w.alertStillComesOut(t)
}

// since returns the device's events from number from on.
func (w *attackWorld) since(from int) []report.Event {
	evs := w.f.events(attackDevice)
	if from > len(evs) {
		return nil
	}
	return evs[from:]
}

func (w *attackWorld) waitStatus(t *testing.T, ok func(*report.Status) bool, what string) *report.Status {
	t.Helper()
	var s *report.Status
	waitFor(t, 20*time.Second, func() bool {
		s = w.f.lastStatus(attackDevice)
		return s != nil && ok(s)
	}, func() string { return fmt.Sprintf("status %s; last: %+v", what, w.f.lastStatus(attackDevice)) })
	return s
}

// checkEvents checks that every event the agent published is complete for its kind; each
// kind of problem is reported once, with how often it occurred.
func (w *attackWorld) checkEvents(t *testing.T) {
	t.Helper()
	type finding struct {
		n     int
		first report.Event
	}
	found := map[string]*finding{}
	var order []string
	for _, e := range w.f.events(attackDevice) {
		var problems []string
		if e.Device != attackDevice {
			problems = append(problems, "device")
		}
		if e.Time.IsZero() || e.Time.After(time.Now().Add(time.Minute)) {
			problems = append(problems, "time")
		}
		switch e.Kind {
		case report.EventFailed, report.EventRefused, report.EventRolledBack:
			if e.Reason == "" || e.ErrorKind == "" {
				problems = append(problems, "no reason or error_kind")
			}
			if e.ErrorKind == "error" && !slices.Contains(w.untyped, e.Version) {
				problems = append(problems, `error_kind "error" does not say which check refused it`)
			}
		default:
			if e.Reason != "" || e.ErrorKind != "" {
				problems = append(problems, "a reason on a "+e.Kind+" event")
			}
		}
		if e.Kind != report.EventRefused && (e.Module != attackModule || e.Version == "" || e.Source == "") {
			problems = append(problems, "no module, version or source")
		}
		if e.Kind == report.EventRefused && e.Source == "" {
			problems = append(problems, "no source")
		}
		for _, p := range problems {
			key := fmt.Sprintf("%s %s: %s", e.Kind, e.Version, p)
			if found[key] == nil {
				found[key] = &finding{first: e}
				order = append(order, key)
			}
			found[key].n++
		}
	}
	for _, key := range order {
		t.Errorf("%d event(s) %s; the first: %+v", found[key].n, key, found[key].first)
	}
}

// refusedOnce checks that a release refused for what it is was not fetched again and again:
// a permanent refusal is reported once, a transient one is retried with backoff.
func (w *attackWorld) refusedOnce(t *testing.T, from int, want attackOutcome, took time.Duration) {
	t.Helper()
	n := 0
	for _, e := range w.since(from) {
		if e.Kind == report.EventFailed && e.Version == want.version {
			n++
		}
	}
	if n > 3 {
		t.Errorf("the agent tried %s %d times in %v, reporting a failed event each time (no backoff, not refused for good)",
			want.version, n, took.Round(time.Millisecond))
	}
}

func describeAttackEvents(evs []report.Event) string {
	var b strings.Builder
	for _, e := range evs {
		fmt.Fprintf(&b, "  %s %s %s %s seq=%d kind=%q reason=%q\n", e.Kind, e.Source, e.Module, e.Version, e.Sequence, e.ErrorKind, e.Reason)
	}
	if b.Len() == 0 {
		return "  (none)"
	}
	return b.String()
}

// wasmVariant is wasm with a custom section holding tag appended: the same code, other bytes
// (and so another digest), longer by a few bytes.
func wasmVariant(wasm []byte, tag string) []byte {
	const name = "attack-test"
	body := append(attackULEB128(len(name)), name...)
	body = append(body, tag...)
	out := append(bytes.Clone(wasm), 0) // section id 0: custom
	out = append(out, attackULEB128(len(body))...)
	return append(out, body...)
}

func attackULEB128(n int) []byte {
	var b []byte
	for {
		c := byte(n & 0x7f)
		n >>= 7
		if n == 0 {
			return append(b, c)
		}
		b = append(b, c|0x80)
	}
}

// startWatchedAgent is startAgent that also tells whether the agent has exited: it returns
// nil while Start runs, and what it returned once it has.
func (f *fleet) startWatchedAgent(cfg *config.Config) (exited func() error) {
	f.t.Helper()
	log := f.agentLogger(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	a, err := New(ctx, cfg, log)
	if err != nil {
		cancel()
		f.t.Fatal(err)
	}
	done := make(chan struct{})
	var startErr error
	go func() {
		startErr = a.Start(ctx)
		close(done)
	}()
	var stopping sync.Once
	t := f.t
	t.Cleanup(func() {
		stopping.Do(func() {
			cancel()
			<-done
			a.Close()
		})
	})
	return func() error {
		select {
		case <-done:
			if ctx.Err() != nil {
				return nil // stopped by the test's end
			}
			return fmt.Errorf("Start returned %v while its context was live", startErr)
		default:
			return nil
		}
	}
}

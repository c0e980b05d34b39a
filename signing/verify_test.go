package signing

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/modules"
)

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }

// expectKind fails unless err is an *Error of kind k with a message mentioning each of
// words.
func expectKind(t *testing.T, err error, k *Kind, words ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", k)
	}
	if !errors.Is(err, k) || KindOf(err) != k {
		t.Fatalf("error %q is not of kind %s (KindOf says %v)", err, k, KindOf(err))
	}
	for _, w := range words {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not mention %q", err, w)
		}
	}
}

// reenvelope rewrites an envelope through f.
func reenvelope(t *testing.T, env []byte, f func(e *Envelope)) []byte {
	t.Helper()
	e, err := ParseEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	f(e)
	out, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestReleaseOK(t *testing.T) {
	fl := newFleet(t)
	mod := wasm(4096, 1)
	env := fl.signRelease(t, fl.manifest, mod, fl.release[0], fl.release[1])
	r, err := fl.v.VerifyReleaseModule(env, bytes.NewReader(mod))
	if err != nil {
		t.Fatal(err)
	}
	if r.Manifest.Name != "threshold-alert" || r.Version.String() != "1.2.0" || r.Size != 4096 || len(r.SignedBy) != 2 || r.Threshold != 2 {
		t.Fatalf("release = %+v", r)
	}
	if r.Manifest.Limits.Memory != 4*modules.MiB || r.Manifest.Config["threshold"] != "30.5" {
		t.Fatalf("manifest did not survive signing: %+v", r.Manifest)
	}
	// All three keys: still fine, counted three times.
	env = fl.signRelease(t, fl.manifest, mod, fl.release[0], fl.release[1], fl.release[2])
	if r, err = fl.v.VerifyReleaseModule(env, bytes.NewReader(mod)); err != nil || len(r.SignedBy) != 3 {
		t.Fatalf("3 of 3: %v %v", r, err)
	}
	// A signature without a keyid hint (as cosign makes them) counts too.
	env = reenvelope(t, env, func(e *Envelope) {
		for i := range e.Signatures {
			e.Signatures[i].KeyID = ""
		}
	})
	if _, err := fl.v.VerifyReleaseModule(env, bytes.NewReader(mod)); err != nil {
		t.Fatalf("no keyid hints: %v", err)
	}
	// A stray signature by another key does not spoil a met threshold.
	env, err = AddSignatures(context.Background(), env, fl.stranger)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fl.v.VerifyReleaseModule(env, bytes.NewReader(mod)); err != nil {
		t.Fatalf("extra stranger signature: %v", err)
	}
}

func TestCountersign(t *testing.T) {
	fl := newFleet(t)
	mod := wasm(1000, 2)
	env := fl.signRelease(t, fl.manifest, mod, fl.release[0])
	_, err := fl.v.VerifyRelease(env)
	expectKind(t, err, ErrThreshold, "2 of the 3 release keys", "only 1 signed")
	env, err = AddSignatures(context.Background(), env, fl.release[2], fl.release[0])
	if err != nil {
		t.Fatal(err)
	}
	if e, _ := ParseEnvelope(env); len(e.Signatures) != 2 {
		t.Fatalf("countersigned envelope has %d signatures, want 2 (a key signs once)", len(e.Signatures))
	}
	if _, err := fl.v.VerifyReleaseModule(env, bytes.NewReader(mod)); err != nil {
		t.Fatal(err)
	}
}

func TestReleaseRefusals(t *testing.T) {
	fl := newFleet(t)
	ctx := context.Background()
	modA, modB := wasm(2048, 1), wasm(2048, 2)
	good := fl.signRelease(t, fl.manifest, modA, fl.release[0], fl.release[1])
	goodR, err := fl.v.VerifyRelease(good)
	if err != nil {
		t.Fatal(err)
	}

	tamperedWasm := append([]byte(nil), modA...)
	tamperedWasm[100] ^= 1

	// The payload's manifest changed after signing (more memory).
	tamperedManifest := reenvelope(t, good, func(e *Envelope) {
		e.Payload = bytes.Replace(e.Payload, []byte(`"memory":4194304`), []byte(`"memory":67108864`), 1)
	})
	if bytes.Equal(tamperedManifest, good) {
		t.Fatal("tampering did not change the payload")
	}
	dupSig := reenvelope(t, good, func(e *Envelope) { e.Signatures = []Signature{e.Signatures[0], e.Signatures[0]} })
	// Two different signatures by the same key (ECDSA signatures are randomized).
	twice := fl.signRelease(t, fl.manifest, modA, fl.release[0])
	twice = reenvelope(t, twice, func(e *Envelope) {
		other, err := Sign(ctx, ReleasePayloadType, e.Payload, fl.release[0])
		if err != nil {
			t.Fatal(err)
		}
		oe, _ := ParseEnvelope(other)
		e.Signatures = append(e.Signatures, Signature{KeyID: "", Sig: oe.Signatures[0].Sig})
	})
	wrongType, _ := Sign(ctx, DesiredPayloadType, mustPayload(t, good), fl.release[0], fl.release[1])
	otherPredicate := statementWith(t, good, func(st map[string]any) { st["predicateType"] = "https://slsa.dev/provenance/v1" })
	twoSubjects := statementWith(t, good, func(st map[string]any) {
		st["subject"] = append(st["subject"].([]any), st["subject"].([]any)[0])
	})
	badManifest := statementWith(t, good, func(st map[string]any) {
		st["predicate"].(map[string]any)["manifest"].(map[string]any)["limits"].(map[string]any)["memory"] = 1
	})
	unknownField := statementWith(t, good, func(st map[string]any) {
		st["predicate"].(map[string]any)["manifest"].(map[string]any)["sudo"] = true
	})
	sign2 := func(payload []byte) []byte {
		b, err := Sign(ctx, ReleasePayloadType, payload, fl.release[0], fl.release[1])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	for _, c := range []struct {
		name  string
		env   []byte
		wasm  io.Reader
		kind  *Kind
		words []string
	}{
		{"tampered wasm", good, bytes.NewReader(tamperedWasm), ErrDigest, []string{"tampered"}},
		{"wasm of B with release of A", good, bytes.NewReader(modB), ErrDigest, []string{"another module"}},
		{"truncated wasm", good, bytes.NewReader(modA[:1000]), ErrDigest, []string{"1000 bytes", "2048"}},
		{"endless data", good, endless{}, ErrTooLarge, []string{"2048 bytes"}},
		{"one byte more", good, io.MultiReader(bytes.NewReader(modA), strings.NewReader("x")), ErrTooLarge, nil},
		{"tampered manifest", tamperedManifest, nil, ErrBadSignature, []string{"changed after it was signed"}},
		{"signed by a rollout key", fl.signRelease(t, fl.manifest, modA, fl.rollout), nil, ErrUnknownKey, []string{"does not hold the release role"}},
		{"signed by a stranger", fl.signRelease(t, fl.manifest, modA, fl.stranger), nil, ErrUnknownKey, nil},
		{"under threshold", fl.signRelease(t, fl.manifest, modA, fl.release[1]), nil, ErrThreshold, []string{"needs 2", "only 1"}},
		{"under threshold plus stranger", fl.signRelease(t, fl.manifest, modA, fl.release[1], fl.stranger), nil, ErrThreshold, []string{"does not hold the role"}},
		{"same signature twice", dupSig, nil, ErrDuplicateKey, []string{"counts once"}},
		{"same key signed twice", twice, nil, ErrDuplicateKey, []string{"signed more than once"}},
		{"wrong payload type", wrongType, nil, ErrPayloadType, []string{DesiredPayloadType}},
		{"other predicate type", sign2(otherPredicate), nil, ErrPayloadType, []string{"slsa"}},
		{"two subjects", sign2(twoSubjects), nil, ErrInvalid, []string{"2 subjects"}},
		{"invalid manifest", sign2(badManifest), nil, ErrInvalid, []string{"limits.memory"}},
		{"unknown manifest field", sign2(unknownField), nil, ErrMalformed, []string{"sudo"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			var err error
			if c.wasm != nil {
				_, err = fl.v.VerifyReleaseModule(c.env, c.wasm)
			} else {
				_, err = fl.v.VerifyRelease(c.env)
			}
			expectKind(t, err, c.kind, c.words...)
		})
	}
	_ = goodR
}

// endless is a module that never ends.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0xAA
	}
	return len(p), nil
}

func mustPayload(t *testing.T, env []byte) []byte {
	t.Helper()
	e, err := ParseEnvelope(env)
	if err != nil {
		t.Fatal(err)
	}
	return e.Payload
}

// statementWith decodes the statement of env, changes it with f and re-encodes it.
func statementWith(t *testing.T, env []byte, f func(map[string]any)) []byte {
	t.Helper()
	var st map[string]any
	if err := json.Unmarshal(mustPayload(t, env), &st); err != nil {
		t.Fatal(err)
	}
	f(st)
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMalformed(t *testing.T) {
	fl := newFleet(t)
	good := fl.signRelease(t, fl.manifest, wasm(100, 1), fl.release[0], fl.release[1])
	for _, c := range malformedCases(good) {
		t.Run(c.name, func(t *testing.T) {
			_, err := fl.v.VerifyRelease([]byte(c.env))
			expectKind(t, err, ErrMalformed, c.words...)
			_, err = fl.v.VerifyDesired([]byte(c.env), Target{Group: "g"}, 0)
			expectKind(t, err, ErrMalformed)
			_, err = ParseTrust([]byte(c.env))
			expectKind(t, err, ErrMalformed)
		})
	}
	// A signed statement that is not JSON.
	env, _ := Sign(context.Background(), ReleasePayloadType, []byte("{not json"), fl.release[0], fl.release[1])
	_, err := fl.v.VerifyRelease(env)
	expectKind(t, err, ErrMalformed, "release statement")
	// A trust file whose key is not PEM.
	f := trustFile(t, 1, t0.Add(time.Hour), []signature.Signer{fl.root}, 1, []signature.Signer{fl.release[0]}, 1, []signature.Signer{fl.rollout}, 1)
	for id, k := range f.Keys {
		k.PublicKey = "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n"
		f.Keys[id] = k
		break
	}
	payload, _ := json.Marshal(f)
	env, _ = Sign(context.Background(), TrustPayloadType, payload, fl.root)
	_, err = ParseTrust(env)
	expectKind(t, err, ErrMalformed, "PEM")
}

func TestDesired(t *testing.T) {
	fl := newFleet(t)
	mod := wasm(3000, 1)
	release, err := fl.v.VerifyReleaseModule(fl.signRelease(t, fl.manifest, mod, fl.release[0], fl.release[2]), bytes.NewReader(mod))
	if err != nil {
		t.Fatal(err)
	}
	g := Target{Group: "greenhouse"}
	d := fl.desired(mod, 7)
	env := fl.signDesired(t, d, fl.rollout)
	got, err := fl.v.VerifyDesired(env, g, 6)
	if err != nil {
		t.Fatal(err)
	}
	if got.Sequence != 7 || got.Modules[0].WavePercent != 25 {
		t.Fatalf("desired = %+v", got)
	}
	if err := CheckRelease(got.Modules[0].Release, release); err != nil {
		t.Fatalf("matching release: %v", err)
	}

	t.Run("replayed", func(t *testing.T) {
		_, err := fl.v.VerifyDesired(env, g, 7)
		expectKind(t, err, ErrReplay, "sequence 7", "not above 7")
		_, err = fl.v.VerifyDesired(env, g, 9)
		expectKind(t, err, ErrReplay)
	})
	t.Run("expired", func(t *testing.T) {
		v := *fl.v
		v.Now = func() time.Time { return t0.Add(24 * time.Hour) }
		_, err := v.VerifyDesired(env, g, 0)
		expectKind(t, err, ErrExpired, "re-sign")
	})
	t.Run("wrong target", func(t *testing.T) {
		_, err := fl.v.VerifyDesired(env, Target{Group: "barn"}, 0)
		expectKind(t, err, ErrWrongTarget, "greenhouse", "barn")
		_, err = fl.v.VerifyDesired(env, Target{Device: "greenhouse"}, 0)
		expectKind(t, err, ErrWrongTarget)
	})
	t.Run("signed by a release key", func(t *testing.T) {
		_, err := fl.v.VerifyDesired(fl.signDesired(t, d, fl.release[0]), g, 0)
		expectKind(t, err, ErrUnknownKey, "rollout role")
	})
	t.Run("tampered", func(t *testing.T) {
		bad := reenvelope(t, env, func(e *Envelope) {
			e.Payload = bytes.Replace(e.Payload, []byte(`"wave_percent":25`), []byte(`"wave_percent":100`), 1)
		})
		_, err := fl.v.VerifyDesired(bad, g, 0)
		expectKind(t, err, ErrBadSignature)
	})
	t.Run("release envelope as desired state", func(t *testing.T) {
		_, err := fl.v.VerifyDesired(fl.signRelease(t, fl.manifest, mod, fl.rollout), g, 0)
		expectKind(t, err, ErrPayloadType)
	})
	t.Run("mix-and-match digest", func(t *testing.T) {
		other := fl.desired(wasm(3000, 9), 8)
		got, err := fl.v.VerifyDesired(fl.signDesired(t, other, fl.rollout), g, 7)
		if err != nil {
			t.Fatal(err)
		}
		expectKind(t, CheckRelease(got.Modules[0].Release, release), ErrMixAndMatch, "desired state names")
	})
	t.Run("mix-and-match version", func(t *testing.T) {
		ref := release.Ref()
		ref.Version = "1.3.0"
		expectKind(t, CheckRelease(ref, release), ErrMixAndMatch)
	})
	t.Run("rollback", func(t *testing.T) {
		ref := release.Ref() // 1.2.0
		expectKind(t, CheckRollback("1.10.0", ref, false), ErrRollback, "below the installed 1.10.0")
		for _, c := range []struct {
			installed string
			rollback  bool
		}{{"1.10.0", true}, {"1.2.0", false}, {"1.1.9", false}, {"", false}, {"1.2.0-rc.1", false}} {
			if err := CheckRollback(c.installed, ref, c.rollback); err != nil {
				t.Errorf("CheckRollback(%q, 1.2.0, %v) = %v", c.installed, c.rollback, err)
			}
		}
	})
	t.Run("invalid documents are not signed", func(t *testing.T) {
		for _, mutate := range []func(*Desired){
			func(d *Desired) { d.Target = Target{} },
			func(d *Desired) { d.Target.Device = "also" },
			func(d *Desired) { d.Sequence = 0 },
			func(d *Desired) { d.Modules[0].WavePercent = 101 },
			func(d *Desired) { d.Modules[0].Release.SHA256 = "abc" },
			func(d *Desired) { d.Modules = append(d.Modules, d.Modules[0]) },
			func(d *Desired) { p := d.Modules[0].Release; p.Name = "other"; d.Modules[0].Previous = &p },
		} {
			d := fl.desired(mod, 1)
			mutate(d)
			_, err := SignDesired(context.Background(), d, fl.rollout)
			expectKind(t, err, ErrInvalid)
		}
	})
}

func TestWaveSelection(t *testing.T) {
	fl := newFleet(t)
	d := fl.desired(wasm(10, 1), 1)
	m := d.Modules[0]
	prev := m.Release
	prev.Version = "1.1.0"
	m.Previous = &prev
	inWave, out := 0, 0
	for i := 0; i < 1000; i++ {
		switch r := m.For("dev-" + string(rune('a'+i%26)) + strings.Repeat("x", i/26)); {
		case r == nil:
			t.Fatal("nil release with a previous one set")
		case r.Version == "1.2.0":
			inWave++
		default:
			out++
		}
	}
	if inWave < 150 || inWave > 350 {
		t.Fatalf("25%% wave: %d in, %d out", inWave, out)
	}
}

func TestTrustExpired(t *testing.T) {
	fl := newFleet(t)
	v := *fl.v
	v.Now = func() time.Time { return t0.Add(366 * 24 * time.Hour) }
	_, err := v.VerifyRelease(fl.signRelease(t, fl.manifest, wasm(10, 1), fl.release[0], fl.release[1]))
	expectKind(t, err, ErrExpired, "trust file version 1 expired")
	_, err = v.VerifyDesired(fl.signDesired(t, fl.desired(wasm(10, 1), 1), fl.rollout), Target{Group: "greenhouse"}, 0)
	expectKind(t, err, ErrExpired, "trust file")
}

func TestBundle(t *testing.T) {
	fl := newFleet(t)
	mod := wasm(500, 1)
	env := fl.signRelease(t, fl.manifest, mod, fl.release[0], fl.release[1])
	e, _ := ParseEnvelope(env)
	// What cosign v3 writes with --bundle (protojson: keyid omitted when empty).
	bundle, _ := json.Marshal(map[string]any{
		"mediaType":            "application/vnd.dev.sigstore.bundle.v0.3+json",
		"verificationMaterial": map[string]any{"publicKey": map[string]any{"hint": "x"}},
		"dsseEnvelope": map[string]any{
			"payload":     base64.StdEncoding.EncodeToString(e.Payload),
			"payloadType": e.PayloadType,
			"signatures": []any{
				map[string]any{"sig": base64.StdEncoding.EncodeToString(e.Signatures[0].Sig)},
				map[string]any{"sig": base64.StdEncoding.EncodeToString(e.Signatures[1].Sig)},
			},
		},
	})
	if !IsBundle(bundle) || IsBundle(env) {
		t.Fatal("IsBundle")
	}
	plain, err := EnvelopeFromBundle(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fl.v.VerifyReleaseModule(plain, bytes.NewReader(mod)); err != nil {
		t.Fatal(err)
	}
	_, err = EnvelopeFromBundle([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","messageSignature":{}}`))
	expectKind(t, err, ErrPayloadType, "message signature")
	_, err = EnvelopeFromBundle([]byte(`{"mediaType":"application/vnd.dev.sigstore.bundle.v0.3+json","dsseEnvelope":{"payload":"!"}}`))
	expectKind(t, err, ErrMalformed)
	_, err = EnvelopeFromBundle([]byte(`{`))
	expectKind(t, err, ErrMalformed)
}

type malformedCase struct {
	name, env string
	words     []string
}

// malformedCases are envelopes every parser must refuse as ErrMalformed (given a good
// envelope to cut up). They also seed FuzzEnvelope.
func malformedCases(good []byte) []malformedCase {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	return []malformedCase{
		{"empty", "", nil},
		{"not JSON", "hello", nil},
		{"PEM instead of JSON", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n", nil},
		{"JSON array", "[]", nil},
		{"truncated", string(good[:len(good)/2]), nil},
		{"trailing data", string(good) + "{}", []string{"after"}},
		{"unknown field", `{"payloadType":"x","payload":"","signatures":[{"sig":"AA=="}],"extra":1}`, []string{"extra"}},
		{"no payloadType", `{"payload":"` + b64("{}") + `","signatures":[{"sig":"AA=="}]}`, []string{"payloadType"}},
		{"no signatures", `{"payloadType":"` + ReleasePayloadType + `","payload":"` + b64("{}") + `","signatures":[]}`, []string{"no signatures"}},
		{"bad payload base64", `{"payloadType":"` + ReleasePayloadType + `","payload":"!!!","signatures":[{"sig":"AA=="}]}`, []string{"base64"}},
		{"bad sig base64", `{"payloadType":"` + ReleasePayloadType + `","payload":"` + b64("{}") + `","signatures":[{"sig":"%%%"}]}`, []string{"base64"}},
		{"payload is a number", `{"payloadType":"` + ReleasePayloadType + `","payload":5,"signatures":[{"sig":"AA=="}]}`, nil},
		{"huge", `{"payloadType":"` + strings.Repeat("a", MaxEnvelopeSize) + `"}`, []string{"bytes"}},
	}
}

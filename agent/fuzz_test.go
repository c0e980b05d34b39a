package agent

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sigstore/sigstore/pkg/signature"

	"github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/protocol/report"
	"github.com/wasmfleet/wasmfleet/signing"
	"github.com/wasmfleet/wasmfleet/signing/signingtest"
)

// FuzzInbound feeds an agent (New, not connected) what the broker can deliver: anything on
// its desired-state topics, verified and applied as desiredLoop does, and anything on other
// topics, routed as onMessage does. Nothing may panic; a message that is not desired state
// is acknowledged exactly once; the state stays valid; and every lifecycle event the agent
// queues for the broker is well-formed. Seeded with signed documents: valid, for another
// group, replayed, expired, and signed by a key the trust file does not hold.
func FuzzInbound(f *testing.F) {
	const device, group = "pi-fuzz", "fuzz"
	root, rollout, stranger := signingtest.NewSigner(f), signingtest.NewSigner(f), signingtest.NewSigner(f)
	trustEnv := fuzzTrust(f, root, rollout)
	sign := func(d *signing.Desired, s signature.Signer) []byte {
		env, err := signing.Sign(context.Background(), signing.DesiredPayloadType, mustJSON(f, d), s)
		if err != nil {
			f.Fatal(err)
		}
		return env
	}
	ref := signing.ReleaseRef{Name: "threshold-alert", Version: "1.0.0", Size: 100,
		SHA256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
	doc := func(g string, seq uint64, expires time.Time) *signing.Desired {
		return &signing.Desired{Target: signing.Target{Group: g}, Sequence: seq, Expires: expires,
			Modules: []signing.ModuleTarget{{Release: ref, Rollout: "r1", WavePercent: 100}}}
	}
	later := time.Now().Add(24 * time.Hour)
	for _, seed := range []struct {
		topic   uint8
		payload []byte
	}{
		{0, sign(doc(group, 5, later), rollout)},
		{0, sign(doc(group, 1, later), rollout)},
		{0, sign(doc("other", 9, later), rollout)},
		{0, sign(doc(group, 9, time.Now().Add(-time.Hour)), rollout)},
		{0, sign(doc(group, 9, later), stranger)},
		{1, sign(&signing.Desired{Target: signing.Target{Device: device}, Sequence: 3, Expires: later}, rollout)},
		{2, []byte(`{"value": 31.5}`)},
		{0, []byte(`{"payloadType":"application/vnd.wasmfleet.desired+json","payload":"e30=","signatures":[]}`)},
		{0, nil},
	} {
		f.Add(seed.topic, seed.payload)
	}

	dir := f.TempDir()
	trust := filepath.Join(dir, "root.json")
	if err := os.WriteFile(trust, trustEnv, 0o600); err != nil {
		f.Fatal(err)
	}
	cfg := &config.Config{DeviceID: device, Groups: []string{group}, TrustRoot: trust, DataDir: filepath.Join(dir, "data")}
	cfg.MQTT.Brokers = []string{"tcp://127.0.0.1:1"}
	cfg.S3.Endpoint, cfg.S3.Bucket, cfg.S3.Insecure = "127.0.0.1:1", "wasmfleet", true
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		f.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f.Cleanup(cancel)
	a, err := New(ctx, cfg, zerolog.Nop())
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(a.Close)
	a.ctx = ctx
	topics := []string{report.Topics{}.GroupDesired(group), report.Topics{}.DeviceDesired(device), "sensors/" + device + "/temperature"}

	f.Fuzz(func(t *testing.T, topic uint8, payload []byte) {
		name := topics[int(topic)%len(topics)]
		if src, ok := a.desiredSource(name); ok {
			a.onDesired(src, payload)
		} else {
			acks := 0
			a.onMessage(inbound{topic: name, payload: payload, qos: 1, id: 1, ack: func() { acks++ }})
			if acks != 1 {
				t.Fatalf("a message on %s was acknowledged %d times", name, acks)
			}
		}
		st := a.store.State()
		if err := st.Validate(); err != nil {
			t.Fatalf("state after the message: %v", err)
		}
		for {
			select {
			case m := <-a.sess.outbox:
				a.sess.unacked.Add(-1)
				if _, err := report.ParseEvent(m.payload); err != nil {
					t.Fatalf("the agent queued a malformed event: %v\n%s", err, m.payload)
				}
				continue
			default:
			}
			break
		}
	})
}

// fuzzTrust signs a trust file in which root holds the root and release roles and rollout
// the rollout role.
func fuzzTrust(f *testing.F, root, rollout signature.SignerVerifier) []byte {
	tf := signingtest.NewTrustFile(1, time.Now().Add(365*24*time.Hour))
	tf.Roles.Root, tf.Roles.Rollout = signingtest.Role(f, tf, 1, root), signingtest.Role(f, tf, 1, rollout)
	tf.Roles.Release = tf.Roles.Root
	return signingtest.Sign(f, tf, root)
}

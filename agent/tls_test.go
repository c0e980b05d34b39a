package agent

import (
	"testing"
	"time"

	"github.com/wasmfleet/wasmfleet/agent/config"
	"github.com/wasmfleet/wasmfleet/internal/testenv"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

// TestAgentOverTLS runs scenario 1 with every connection encrypted and authenticated: the
// broker over TLS demanding a client certificate (mTLS) and a password, the object store over
// https with a private CA, and read-only S3 credentials.
func TestAgentOverTLS(t *testing.T) {
	pki := testenv.NewPKI(t)
	f := newFleetWith(t, pki)
	manifest, wasm := example(t, "threshold-alert", "threshold-alert.wasm")
	ref := f.publishRelease(manifest, wasm)
	f.publishDesired(f.desiredDoc("kitchen", everyone(ref, "r1")))

	cfg := f.agentConfig("pi-tls", "kitchen")
	cfg.MQTT.Brokers = []string{f.mq.TLSURL()}
	cfg.MQTT.CAFile, cfg.MQTT.CertFile, cfg.MQTT.KeyFile = pki.CAFile, pki.ClientCertFile, pki.ClientKeyFile
	cfg.MQTT.Username, cfg.MQTT.Password = "pi-tls", config.Secret("device-pw")
	cfg.S3.Insecure, cfg.S3.CAFile = false, pki.CAFile
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	f.startAgent(cfg)
	f.waitEvent("pi-tls", report.EventActivated, "1.0.0")
	f.publishRaw("sensors/pi-tls/temperature", []byte(`{"value": 40}`), false)
	waitFor(t, 10*time.Second, func() bool { return len(f.messages("alerts/pi-tls/temperature")) == 1 },
		func() string { return "an alert over TLS" })
	f.waitStatus("pi-tls", func(s *report.Status) bool {
		m, ok := moduleStatus(s, "threshold-alert")
		return ok && m.Version == "1.0.0" && s.Online
	}, "online with 1.0.0")
}

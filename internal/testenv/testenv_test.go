package testenv_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/minio/minio-go/v7"

	"github.com/wasmfleet/wasmfleet/internal/testenv"
)

const wait = 10 * time.Second

type mqttOpts struct {
	tls       *tls.Config
	user, pw  string
	id        string
	persisent bool // clean session off
	onMessage mqtt.MessageHandler
}

// connect returns a connected client or the broker's refusal.
func connect(t *testing.T, url string, o mqttOpts) (mqtt.Client, error) {
	t.Helper()
	if o.id == "" {
		o.id = fmt.Sprintf("testenv-%d", time.Now().UnixNano())
	}
	opts := mqtt.NewClientOptions().
		AddBroker(url).
		SetClientID(o.id).
		SetCleanSession(!o.persisent).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).
		SetOrderMatters(false).
		SetTLSConfig(o.tls).
		SetUsername(o.user).
		SetPassword(o.pw)
	if o.onMessage != nil {
		opts.SetDefaultPublishHandler(o.onMessage)
	}
	c := mqtt.NewClient(opts)
	tok := c.Connect()
	if !tok.WaitTimeout(wait) {
		return nil, errors.New("connect timed out")
	}
	if err := tok.Error(); err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func mustConnect(t *testing.T, url string, o mqttOpts) mqtt.Client {
	t.Helper()
	c, err := connect(t, url, o)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	return c
}

func await(t *testing.T, tok mqtt.Token, what string) {
	t.Helper()
	if !tok.WaitTimeout(wait) {
		t.Fatalf("%s: timed out", what)
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// roundTrip subscribes, publishes and waits for the message to come back.
func roundTrip(t *testing.T, c mqtt.Client) {
	t.Helper()
	got := make(chan string, 1)
	await(t, c.Subscribe("testenv/rt", 1, func(_ mqtt.Client, m mqtt.Message) { got <- string(m.Payload()) }), "subscribe")
	await(t, c.Publish("testenv/rt", 1, false, "ping"), "publish")
	select {
	case p := <-got:
		if p != "ping" {
			t.Fatalf("got %q, want ping", p)
		}
	case <-time.After(wait):
		t.Fatal("message not delivered")
	}
}

func TestMosquittoPlain(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, nil)
	roundTrip(t, mustConnect(t, m.URL(), mqttOpts{}))
	if m.TLSURL() != "" {
		t.Errorf("TLSURL without a PKI = %q", m.TLSURL())
	}
}

func TestMosquittoTLS(t *testing.T) {
	t.Parallel()
	pki := testenv.NewPKI(t)
	m := testenv.StartMosquitto(t, &testenv.MosquittoOptions{PKI: pki})
	roundTrip(t, mustConnect(t, m.TLSURL(), mqttOpts{tls: pki.TLSConfig()}))

	other := testenv.NewPKI(t)
	if _, err := connect(t, m.TLSURL(), mqttOpts{tls: other.TLSConfig()}); err == nil {
		t.Error("a client trusting another CA connected")
	}
}

func TestMosquittoMTLS(t *testing.T) {
	t.Parallel()
	pki := testenv.NewPKI(t)
	m := testenv.StartMosquitto(t, &testenv.MosquittoOptions{PKI: pki, RequireClientCert: true})
	roundTrip(t, mustConnect(t, m.TLSURL(), mqttOpts{tls: pki.ClientTLSConfig()}))

	if _, err := connect(t, m.TLSURL(), mqttOpts{tls: pki.TLSConfig()}); err == nil {
		t.Error("a client without a certificate connected")
	}
	other := testenv.NewPKI(t)
	foreign := other.ClientTLSConfig()
	foreign.RootCAs = pki.CertPool()
	if _, err := connect(t, m.TLSURL(), mqttOpts{tls: foreign}); err == nil {
		t.Error("a client with a certificate from another CA connected")
	}
}

func TestMosquittoPassword(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, &testenv.MosquittoOptions{
		Users: map[string]string{"device-1": "s3cret", "fleet": "other"},
	})
	roundTrip(t, mustConnect(t, m.URL(), mqttOpts{user: "device-1", pw: "s3cret"}))
	mustConnect(t, m.URL(), mqttOpts{user: "fleet", pw: "other"})
	for _, o := range []mqttOpts{{}, {user: "device-1", pw: "wrong"}, {user: "nobody", pw: "s3cret"}} {
		if _, err := connect(t, m.URL(), o); err == nil {
			t.Errorf("user %q password %q connected", o.user, o.pw)
		}
	}
}

func TestMosquittoRetainedSurvivesRestart(t *testing.T) {
	t.Parallel()
	m := testenv.StartMosquitto(t, nil)
	pub := mustConnect(t, m.URL(), mqttOpts{})
	await(t, pub.Publish("wasmfleet/devices/d1/status", 1, true, `{"online":true}`), "publish")
	pub.Disconnect(0)
	m.Stop()
	if m.Running() {
		t.Fatal("Running after Stop")
	}
	m.Start()

	got := make(chan string, 1)
	sub := mustConnect(t, m.URL(), mqttOpts{})
	await(t, sub.Subscribe("wasmfleet/devices/+/status", 1, func(_ mqtt.Client, msg mqtt.Message) {
		if msg.Retained() {
			got <- string(msg.Payload())
		}
	}), "subscribe")
	select {
	case p := <-got:
		if p != `{"online":true}` {
			t.Fatalf("retained %q", p)
		}
	case <-time.After(wait):
		t.Fatalf("retained message lost in the restart; log:\n%s", m.LogTail())
	}
}

// TestMosquittoQueuedForPersistentSession is what the agent tests rely on: QoS 1 messages
// published while a persistent-session client is away are delivered after the broker
// restarts, whether it was stopped cleanly or killed (once the broker has saved them).
func TestMosquittoQueuedForPersistentSession(t *testing.T) {
	t.Parallel()
	for _, how := range []string{"stop", "kill"} {
		t.Run(how, func(t *testing.T) {
			m := testenv.StartMosquitto(t, nil)
			const id, topic, n = "device-7", "sensors/7/temperature", 5
			sub := mustConnect(t, m.URL(), mqttOpts{id: id, persisent: true})
			await(t, sub.Subscribe(topic, 1, nil), "subscribe")
			sub.Disconnect(100)

			pub := mustConnect(t, m.URL(), mqttOpts{})
			for i := range n {
				await(t, pub.Publish(topic, 1, false, fmt.Sprint(i)), "publish")
			}
			if how == "kill" {
				// Mosquitto saves at the end of the loop iteration that handled a change,
				// after the PUBACK went out; any later answer means the save is done.
				await(t, pub.Subscribe("testenv/sync", 0, nil), "sync")
			}
			pub.Disconnect(0)
			if how == "stop" {
				m.Stop()
			} else {
				m.Kill()
			}
			m.Start()

			got := make(chan string, n)
			mustConnect(t, m.URL(), mqttOpts{id: id, persisent: true, onMessage: func(_ mqtt.Client, msg mqtt.Message) {
				got <- string(msg.Payload())
			}})
			seen := map[string]bool{}
			deadline := time.After(wait)
			for len(seen) < n {
				select {
				case p := <-got:
					seen[p] = true
				case <-deadline:
					t.Fatalf("after %s got %d of %d queued messages: %v; log:\n%s", how, len(seen), n, seen, m.LogTail())
				}
			}
		})
	}
}

func TestMosquittoRestartKeepsURL(t *testing.T) {
	t.Parallel()
	pki := testenv.NewPKI(t)
	m := testenv.StartMosquitto(t, &testenv.MosquittoOptions{PKI: pki})
	url, tlsURL := m.URL(), m.TLSURL()
	m.Kill()
	if _, err := connect(t, url, mqttOpts{}); err == nil {
		t.Fatal("connected to a killed broker")
	}
	m.Start()
	if m.URL() != url || m.TLSURL() != tlsURL {
		t.Fatalf("URLs changed: %s %s -> %s %s", url, tlsURL, m.URL(), m.TLSURL())
	}
	roundTrip(t, mustConnect(t, m.TLSURL(), mqttOpts{tls: pki.TLSConfig()}))
}

func TestS3PutGetAndKill(t *testing.T) {
	t.Parallel()
	for _, secure := range []bool{false, true} {
		t.Run(fmt.Sprintf("tls=%t", secure), func(t *testing.T) {
			var opts testenv.S3Options
			if secure {
				opts.PKI = testenv.NewPKI(t)
			}
			s := testenv.StartS3(t, &opts)
			if s.Secure() != secure {
				t.Fatalf("Secure() = %t", s.Secure())
			}
			s.MakeBucket("fleet")
			want := []byte("\x00asm\x01\x00\x00\x00")
			s.Put("fleet", "releases/echo/1.0.0/module.wasm", want)
			if got := s.Get("fleet", "releases/echo/1.0.0/module.wasm"); !bytes.Equal(got, want) {
				t.Fatalf("Get = %q", got)
			}
			s.Kill()
			s.Start()
			if got := s.Get("fleet", "releases/echo/1.0.0/module.wasm"); !bytes.Equal(got, want) {
				t.Fatalf("after Kill/Start Get = %q", got)
			}
			s.Stop()
			s.Start()
			if got := s.Get("fleet", "releases/echo/1.0.0/module.wasm"); !bytes.Equal(got, want) {
				t.Fatalf("after Stop/Start Get = %q", got)
			}
		})
	}
}

// TestS3KillMidDownload shows what the agent's resume test sees: a Kill cuts a download
// short with an error, and after Start a range request fetches the rest.
func TestS3KillMidDownload(t *testing.T) {
	t.Parallel()
	s := testenv.StartS3(t, nil)
	s.MakeBucket("fleet")
	data := make([]byte, 32<<20)
	for i := range data {
		data[i] = byte(i * 7 / 3)
	}
	s.Put("fleet", "big", data)

	ctx := context.Background()
	obj, err := s.Client().GetObject(ctx, "fleet", "big", minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	first := make([]byte, 1<<20)
	if _, err := io.ReadFull(obj, first); err != nil {
		t.Fatal(err)
	}
	s.Kill()
	rest, err := io.ReadAll(obj)
	if err == nil {
		t.Fatalf("read the whole object (%d bytes) across a Kill", len(first)+len(rest))
	}
	have := append(first, rest...)
	if len(have) >= len(data) {
		t.Fatalf("got %d bytes of %d and an error (%v)", len(have), len(data), err)
	}

	s.Start()
	var ro minio.GetObjectOptions
	if err := ro.SetRange(int64(len(have)), 0); err != nil {
		t.Fatal(err)
	}
	obj2, err := s.Client().GetObject(ctx, "fleet", "big", ro)
	if err != nil {
		t.Fatal(err)
	}
	defer obj2.Close()
	tail, err := io.ReadAll(obj2)
	if err != nil {
		t.Fatalf("resume at %d: %v", len(have), err)
	}
	if sha256.Sum256(append(have, tail...)) != sha256.Sum256(data) {
		t.Fatalf("resumed object differs (%d + %d bytes)", len(have), len(tail))
	}
}

func TestS3ReadOnlyUser(t *testing.T) {
	t.Parallel()
	s := testenv.StartS3(t, &testenv.S3Options{PKI: testenv.NewPKI(t)})
	s.MakeBucket("fleet")
	s.MakeBucket("private")
	s.Put("fleet", "trust/root.json", []byte("{}"))
	s.Put("private", "secret", []byte("x"))
	access, secret := s.ReadOnlyUser("fleet")
	access2, secret2 := s.ReadOnlyUser("fleet")
	ctx := context.Background()

	for _, c := range []*minio.Client{s.NewClient(access, secret), s.NewClient(access2, secret2)} {
		obj, err := c.GetObject(ctx, "fleet", "trust/root.json", minio.GetObjectOptions{})
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(obj)
		obj.Close()
		if err != nil || string(b) != "{}" {
			t.Fatalf("read-only user get: %q, %v", b, err)
		}
		if _, err := c.StatObject(ctx, "fleet", "trust/root.json", minio.StatObjectOptions{}); err != nil {
			t.Errorf("read-only user stat: %v", err)
		}
		n := 0
		for o := range c.ListObjects(ctx, "fleet", minio.ListObjectsOptions{Recursive: true}) {
			if o.Err != nil {
				t.Fatalf("read-only user list: %v", o.Err)
			}
			n++
		}
		if n != 1 {
			t.Errorf("read-only user listed %d objects", n)
		}
		if _, err := c.PutObject(ctx, "fleet", "evil", bytes.NewReader([]byte("x")), 1, minio.PutObjectOptions{}); err == nil {
			t.Error("read-only user wrote an object")
		}
		if err := c.RemoveObject(ctx, "fleet", "trust/root.json", minio.RemoveObjectOptions{}); err == nil {
			t.Error("read-only user removed an object")
		}
		if _, err := c.StatObject(ctx, "private", "secret", minio.StatObjectOptions{}); err == nil {
			t.Error("read-only user read another bucket")
		}
		if err := c.MakeBucket(ctx, "mine", minio.MakeBucketOptions{}); err == nil {
			t.Error("read-only user made a bucket")
		}
	}

	// Accounts live in the IAM directory and survive a restart.
	s.Kill()
	s.Start()
	if _, err := s.NewClient(access, secret).StatObject(ctx, "fleet", "trust/root.json", minio.StatObjectOptions{}); err != nil {
		t.Fatalf("read-only user after restart: %v", err)
	}
	if _, err := s.NewClient(access, "wrong").StatObject(ctx, "fleet", "trust/root.json", minio.StatObjectOptions{}); err == nil {
		t.Fatal("wrong secret accepted")
	}
}

func TestPKIFiles(t *testing.T) {
	t.Parallel()
	p := testenv.NewPKI(t)
	if _, err := tls.LoadX509KeyPair(p.ServerCertFile, p.ServerKeyFile); err != nil {
		t.Fatal(err)
	}
	cert, key := p.IssueClientCert("device-42")
	if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
		t.Fatal(err)
	}
	if len(p.ClientTLSConfig().Certificates) != 1 || len(p.TLSConfig().Certificates) != 0 {
		t.Fatal("client certificate in the wrong config")
	}
}

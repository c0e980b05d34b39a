package devenv

import (
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/mochi-mqtt/server/v2/packets"
	"github.com/rs/zerolog"
)

func TestRetainedRoundTrip(t *testing.T) {
	msgs := []retainedMsg{
		{Topic: "wasmfleet/groups/dev/desired", Payload: []byte(`{"x":1}`), QoS: 1, Created: 1700000000},
		{Topic: "a/b", Payload: []byte{0, 1, 2, 255}},
	}
	b, err := marshalRetained(msgs)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseRetained(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []retainedMsg{msgs[1], msgs[0]} // sorted by topic
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	empty, err := marshalRetained(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := parseRetained(empty); err != nil || len(got) != 0 {
		t.Errorf("empty file: %v %v", got, err)
	}
}

// malformedRetained are files parseRetained must refuse (and the fuzz target's seeds).
var malformedRetained = []struct{ name, text, want string }{
	{"not json", "retained", "not a retained-messages file"},
	{"trailing data", `{"version":1,"messages":[]} {}`, "data after"},
	{"unknown field", `{"version":1,"messages":[],"sessions":[]}`, "unknown field"},
	{"version", `{"version":2,"messages":[]}`, "version 2"},
	{"no version", `{"messages":[]}`, "version 0"},
	{"empty topic", `{"version":1,"messages":[{"topic":"","payload":"eA=="}]}`, "empty topic"},
	{"wildcard", `{"version":1,"messages":[{"topic":"a/+","payload":"eA=="}]}`, "wildcard"},
	{"hash", `{"version":1,"messages":[{"topic":"a/#","payload":"eA=="}]}`, "wildcard"},
	{"nul", `{"version":1,"messages":[{"topic":"a\u0000","payload":"eA=="}]}`, "NUL"},
	{"qos", `{"version":1,"messages":[{"topic":"a","payload":"eA==","qos":3}]}`, "qos 3"},
	{"empty payload", `{"version":1,"messages":[{"topic":"a","payload":""}]}`, "empty payload"},
	{"bad base64", `{"version":1,"messages":[{"topic":"a","payload":"!!"}]}`, "not a retained-messages file"},
	{"twice", `{"version":1,"messages":[{"topic":"a","payload":"eA=="},{"topic":"a","payload":"eQ=="}]}`, "twice"},
	{"long topic", `{"version":1,"messages":[{"topic":"` + strings.Repeat("t", maxTopicLen+1) + `","payload":"eA=="}]}`, "topic of"},
}

func TestParseRetainedMalformed(t *testing.T) {
	for _, c := range malformedRetained {
		t.Run(c.name, func(t *testing.T) {
			_, err := parseRetained([]byte(c.text))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("err %v, want one with %q", err, c.want)
			}
		})
	}
	if _, err := parseRetained(make([]byte, maxRetainedFile+1)); err == nil || !strings.Contains(err.Error(), "more than") {
		t.Errorf("oversized file: %v", err)
	}
}

func FuzzParseRetained(f *testing.F) {
	for _, c := range malformedRetained {
		if len(c.text) < 4096 {
			f.Add([]byte(c.text))
		}
	}
	good, err := marshalRetained([]retainedMsg{{Topic: "a/b", Payload: []byte("x"), QoS: 1, Created: 5}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := parseRetained(data)
		if err != nil {
			return
		}
		b, err := marshalRetained(msgs)
		if err != nil {
			t.Fatal(err)
		}
		again, err := parseRetained(b)
		if err != nil {
			t.Fatalf("what marshalRetained wrote does not parse: %v", err)
		}
		if len(again) != len(msgs) {
			t.Fatalf("%d messages, then %d", len(msgs), len(again))
		}
	})
}

func TestOpenRetainedRefusesAMalformedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "retained.json")
	if err := os.WriteFile(path, []byte(`{"version":1,"messages":[{"topic":"a/#","payload":"eA=="}]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := openRetained(path, zerolog.Nop())
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "remove the file") {
		t.Errorf("err %v, want one naming the file and what to do", err)
	}
}

// TestBrokerKeepsRetainedMessages: a retained message published to the embedded broker is
// delivered by the next broker started on the same file; one deleted (empty payload) is
// not; a wrong password is refused.
func TestBrokerKeepsRetainedMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "retained.json")
	start := func() *broker {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		b, err := startBroker(ln, "dev", "secret", path, zerolog.New(zerolog.NewTestWriter(t)))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	connect := func(b *broker, password string) (mqtt.Client, error) {
		c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker(b.URL()).SetUsername("dev").SetPassword(password).
			SetClientID("t-" + password).SetConnectTimeout(5 * time.Second))
		tok := c.Connect()
		if !tok.WaitTimeout(10 * time.Second) {
			t.Fatal("connect timed out")
		}
		return c, tok.Error()
	}
	b := start()
	if _, err := connect(b, "wrong"); err == nil {
		t.Error("a wrong password was accepted")
	}
	c, err := connect(b, "secret")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []struct{ topic, payload string }{{"keep/me", "kept"}, {"drop/me", "x"}, {"drop/me", ""}} {
		if tok := c.Publish(m.topic, 1, true, m.payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	c.Disconnect(100)
	if err := b.close(); err != nil {
		t.Fatal(err)
	}

	b = start()
	defer b.close()
	c, err = connect(b, "secret")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Disconnect(100)
	var mu sync.Mutex
	got := map[string]string{}
	if tok := c.Subscribe("#", 1, func(_ mqtt.Client, m mqtt.Message) {
		mu.Lock()
		got[m.Topic()] = string(m.Payload())
		mu.Unlock()
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	// Retained messages follow the SUBACK at once; a round trip through the broker after
	// them shows they are all in.
	if tok := c.Publish("marker", 1, false, "m"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		_, done := got["marker"]
		snapshot := map[string]string{}
		for k, v := range got {
			snapshot[k] = v
		}
		mu.Unlock()
		if done {
			want := map[string]string{"keep/me": "kept", "marker": "m"}
			if !reflect.DeepEqual(snapshot, want) {
				t.Errorf("after a restart the broker sent %v, want %v", snapshot, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out; got %v", snapshot)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRetainedHookKeepsWhatTheNextRunCanRead: beyond its bounds the hook keeps no more
// messages (the broker still has them), so that the file always parses; a message that
// grows past the bound is dropped from the file rather than kept at an old value.
func TestRetainedHookKeepsWhatTheNextRunCanRead(t *testing.T) {
	path := filepath.Join(t.TempDir(), "retained.json")
	h, err := openRetained(path, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	h.maxMessages, h.maxPayload = 2, 10
	pub := func(topic, payload string, r int64) {
		h.OnRetainMessage(nil, packets.Packet{TopicName: topic, Payload: []byte(payload), FixedHeader: packets.FixedHeader{Retain: true, Qos: 1}}, r)
	}
	pub("a", "1234", 1)
	pub("b", "1234", 1)
	pub("c", "1", 1)         // a third message: not kept
	pub("a", "123456789", 1) // 13 bytes in all: a is dropped
	pub("b", "", -1)         // deleted
	pub("d", "12", 1)        // room again
	if err := h.Stop(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := parseRetained(b)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, m.Topic+"="+string(m.Payload))
	}
	if want := []string{"d=12"}; !reflect.DeepEqual(got, want) {
		t.Errorf("kept %v, want %v", got, want)
	}
}

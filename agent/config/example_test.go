package config_test

import (
	"errors"
	"fmt"

	"github.com/wasmfleet/wasmfleet/agent/config"
)

// Load reports everything wrong at once, each problem at its key and with the source
// of the value.
func ExampleLoad() {
	env := []string{
		"WASMFLEET_MQTT_BROKERS=tcp://127.0.0.1:1883,ftp://broker",
		"WASMFLEET_S3_ENDPOINT=https://s3.example.com",
		"WASMFLEET_METRICS_LISTEN=0.0.0.0:9464",
		"HOME=/root",
	}
	overrides := map[string]string{ // what the agent's flags would give
		"device_id":  "pi 1",
		"trust_root": "/nonexistent/root.json",
	}
	_, err := config.Load("", env, overrides)
	var ps config.Problems
	if errors.As(err, &ps) {
		for _, p := range ps {
			fmt.Println(p)
		}
	}
	// Output:
	// device_id: device id "pi 1": character ' ' is not allowed (use A-Z a-z 0-9 . _ -) (from overrides)
	// mqtt.brokers[1]: "ftp://broker" is not an MQTT URL (tcp://, ssl://, tls://, mqtts://) (from WASMFLEET_MQTT_BROKERS)
	// s3.endpoint: "https://s3.example.com" must be host or host:port, without a scheme (set s3.insecure for plain http) (from WASMFLEET_S3_ENDPOINT)
	// s3.bucket: is required
	// trust_root: "/nonexistent/root.json" does not exist (from overrides)
	// metrics.listen: "0.0.0.0:9464" is not a loopback address; /metrics is served to this device only (127.0.0.1, [::1] or localhost) (from WASMFLEET_METRICS_LISTEN)
}

// A Config prints, logs and marshals with its secrets redacted.
func ExampleConfig_String() {
	c := config.Config{DeviceID: "pi-1", MQTT: config.MQTT{Username: "pi-1", Password: "hunter2"}}
	fmt.Println(c)
	fmt.Println(c.MQTT.Password, string(c.MQTT.Password))
	// Output:
	// config{device_id="pi-1" mqtt.username="pi-1" mqtt.password="[redacted]"}
	// [redacted] hunter2
}

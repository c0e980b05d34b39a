package devenv

import (
	"context"
	"fmt"
	"math"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// Sample events, one set per agent and tick, on the topics the example handlers listen to:
// a temperature that swings around threshold-alert's 30.5 (so alerts come and go), the same
// reading in Celsius for c-to-f, and every fifth tick a greeting for echo.
const (
	temperatureTopic = "sensors/%s/temperature"
	celsiusTopic     = "sensors/%s/celsius"
	echoTopic        = "echo-in/%s"
	swingPeriod      = 30 // ticks
)

// reading is the sample temperature of device i of n at tick k: 27 ± 6, each device a
// phase apart, to one decimal.
func reading(k, i, n int) float64 {
	x := 2 * math.Pi * (float64(k)/swingPeriod + float64(i)/float64(max(n, 1)))
	return math.Round((27+6*math.Sin(x))*10) / 10
}

// traffic publishes the sample events every EventInterval until ctx ends, through its own
// MQTT session (QoS 0: sensors that lose a reading send the next).
func (e *Env) traffic(ctx context.Context, info Info) {
	o := mqtt.NewClientOptions().AddBroker(info.Broker).SetClientID("wasmfleet-dev-sensors").
		SetUsername(info.MQTTUsername).SetPassword(info.MQTTPassword).
		SetCleanSession(true).SetAutoReconnect(true).SetConnectRetry(true).SetConnectRetryInterval(time.Second)
	c := mqtt.NewClient(o)
	c.Connect() // retried in the background until it succeeds
	defer c.Disconnect(100)
	t := time.NewTicker(e.cfg.EventInterval)
	defer t.Stop()
	for k := 0; ; k++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if !c.IsConnectionOpen() {
			continue
		}
		n := len(info.Devices)
		sent := 0
		for i, d := range info.Devices {
			v := reading(k, i, n)
			c.Publish(fmt.Sprintf(temperatureTopic, d), 0, false, fmt.Sprintf(`{"value": %.1f}`, v))
			c.Publish(fmt.Sprintf(celsiusTopic, d), 0, false, fmt.Sprintf(`{"celsius": %.1f}`, v))
			sent += 2
			if k%5 == 0 {
				c.Publish(fmt.Sprintf(echoTopic, d), 0, false, fmt.Sprintf(`{"hello": %q, "n": %d}`, d, k))
				sent++
			}
		}
		e.mu.Lock()
		e.stats.Events += uint64(sent)
		e.mu.Unlock()
	}
}

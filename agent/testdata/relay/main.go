// Command relay is TestEndToEndRate's second peer: the least an MQTT device program written
// with paho can do per event. It subscribes to -in with QoS 1, publishes each message's
// payload to -out with QoS 1 and then acknowledges the message, as the agent does, without
// a sandbox, a queue or an outbox. Everything else is paho's defaults.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

func main() {
	broker := flag.String("broker", "", "broker URL")
	in := flag.String("in", "", "topic to subscribe to")
	out := flag.String("out", "", "topic to publish to")
	flag.Parse()
	o := mqtt.NewClientOptions().AddBroker(*broker).SetClientID("relay").
		SetCleanSession(false).SetAutoAckDisabled(true)
	c := mqtt.NewClient(o)
	if t := c.Connect(); t.Wait() && t.Error() != nil {
		fmt.Fprintln(os.Stderr, "relay: connect:", t.Error())
		os.Exit(1)
	}
	t := c.Subscribe(*in, 1, func(c mqtt.Client, m mqtt.Message) {
		c.Publish(*out, 1, false, m.Payload())
		m.Ack()
	})
	if t.Wait() && t.Error() != nil {
		fmt.Fprintln(os.Stderr, "relay: subscribe:", t.Error())
		os.Exit(1)
	}
	fmt.Println("relay: subscribed")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	<-sig
	c.Disconnect(100)
}

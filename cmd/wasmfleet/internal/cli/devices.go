package cli

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"github.com/wasmfleet/wasmfleet/fleet/registry"
	"github.com/wasmfleet/wasmfleet/protocol/report"
)

func init() {
	register("devices", "list the devices from their retained status messages", devicesCmd)
}

const devicesSynopsis = `[--group G] [--module NAME[@VERSION]] [--offline] [--json] [MQTT flags]

Connects to the broker, reads every device's retained status (wasmfleet/devices/+/status) until
no more arrive for --idle (at most --wait), and prints one line per device: whether it is
online ("lost" when the broker published its last will: the connection dropped without a
goodbye), its groups, each module at its version with its state, the last error, and the
age of the status. The password comes from WASMFLEET_MQTT_PASSWORD (or
WASMFLEET_MQTT_PASSWORD_FILE).`

// Environment variables the MQTT flags default to (the agent's names, as for S3).
const (
	mqttBrokersEnv  = "WASMFLEET_MQTT_BROKERS"
	mqttUserEnv     = "WASMFLEET_MQTT_USERNAME"
	mqttPasswordEnv = "WASMFLEET_MQTT_PASSWORD"
	mqttPwFileEnv   = "WASMFLEET_MQTT_PASSWORD_FILE"
	mqttCAEnv       = "WASMFLEET_MQTT_CA_FILE"
	mqttCertEnv     = "WASMFLEET_MQTT_CERT_FILE"
	mqttKeyEnv      = "WASMFLEET_MQTT_KEY_FILE"
	mqttPrefixEnv   = "WASMFLEET_MQTT_TOPIC_PREFIX"
)

// mqttFlags are the flags that say how to reach the broker. The password is never a flag.
type mqttFlags struct {
	brokers, ca, cert, key, username, prefix *string
	timeout                                  *time.Duration
	devPassword                              string // from the dev environment (devfallback.go)
}

func addMQTTFlags(fs *flag.FlagSet) *mqttFlags {
	f := &mqttFlags{
		brokers:  fs.String("broker", os.Getenv(mqttBrokersEnv), "broker URL: tcp://, ssl://, tls:// or mqtts:// host:port; comma-separated to try several (env "+mqttBrokersEnv+")"),
		ca:       fs.String("ca", os.Getenv(mqttCAEnv), "PEM CA certificates for a TLS broker; default the system's (env "+mqttCAEnv+")"),
		cert:     fs.String("cert", os.Getenv(mqttCertEnv), "PEM client certificate for mTLS (env "+mqttCertEnv+")"),
		key:      fs.String("key", os.Getenv(mqttKeyEnv), "PEM private key of --cert (env "+mqttKeyEnv+")"),
		username: fs.String("username", os.Getenv(mqttUserEnv), "MQTT user name (env "+mqttUserEnv+"); the password only from "+mqttPasswordEnv+" or "+mqttPwFileEnv),
		prefix:   fs.String("prefix", envOr(mqttPrefixEnv, report.DefaultPrefix), "first level of the wasmfleet topics (env "+mqttPrefixEnv+")"),
		timeout:  fs.Duration("connect-timeout", 10*time.Second, "how long connecting to the broker may take"),
	}
	devTargetsOf(fs).mqtt = f
	return f
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// connect opens a clean, short-lived session with a random client id.
func (f *mqttFlags) connect(ctx context.Context) (mqtt.Client, error) {
	var brokers []string
	for b := range strings.SplitSeq(*f.brokers, ",") {
		if b = strings.TrimSpace(b); b != "" {
			brokers = append(brokers, b)
		}
	}
	if len(brokers) == 0 {
		return nil, usagef("no broker: give --broker URL (or set %s)", mqttBrokersEnv)
	}
	password, err := f.password()
	if err != nil {
		return nil, opError{"mqtt", err}
	}
	if password != "" && *f.username == "" {
		return nil, usagef("%s is set but no --username (or %s) is given", mqttPasswordEnv, mqttUserEnv)
	}
	if (*f.cert == "") != (*f.key == "") {
		return nil, usagef("--cert and --key go together")
	}
	var rnd [6]byte
	rand.Read(rnd[:])
	o := mqtt.NewClientOptions().SetClientID("wasmfleet-cli-" + hex.EncodeToString(rnd[:])).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(*f.timeout).SetOrderMatters(true)
	for _, b := range brokers {
		o.AddBroker(b)
	}
	if *f.username != "" {
		o.SetUsername(*f.username).SetPassword(password)
	}
	if *f.ca != "" || *f.cert != "" {
		t := &tls.Config{MinVersion: tls.VersionTLS12}
		if *f.ca != "" {
			pem, err := readFile("--ca", *f.ca)
			if err != nil {
				return nil, opError{"mqtt", err}
			}
			t.RootCAs = x509.NewCertPool()
			if !t.RootCAs.AppendCertsFromPEM(pem) {
				return nil, opError{"mqtt", fmt.Errorf("--ca %s holds no PEM certificate", *f.ca)}
			}
		}
		if *f.cert != "" {
			c, err := tls.LoadX509KeyPair(*f.cert, *f.key)
			if err != nil {
				return nil, opError{"mqtt", fmt.Errorf("client certificate: %w", err)}
			}
			t.Certificates = []tls.Certificate{c}
		}
		o.SetTLSConfig(t)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, opError{"mqtt", fmt.Errorf("connect to %s: %w", strings.Join(brokers, ", "), err)}
	}
	return c, nil
}

func devicesCmd(ctx context.Context, env *Env, args []string) error {
	fs := newFlags(env, "devices", devicesSynopsis)
	group := fs.String("group", "", "only devices in this group")
	module := fs.String("module", "", "only devices that run this module (NAME, or NAME@VERSION for one version)")
	offline := fs.Bool("offline", false, "only devices that are not online")
	asJSON := fs.Bool("json", false, "print a JSON array instead of a table")
	wait := fs.Duration("wait", registry.DefaultMax, "the longest time to collect statuses for")
	idle := fs.Duration("idle", registry.DefaultIdle, "the statuses are all in once none has arrived for this long")
	mf := addMQTTFlags(fs)
	if err := parse(fs, permute(fs, args)); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("devices takes no arguments (usage: wasmfleet devices %s)", strings.SplitN(devicesSynopsis, "\n", 2)[0])
	}
	filter := registry.Filter{Group: *group, Offline: *offline}
	if *module != "" {
		var err error
		if filter.Module, filter.Version, err = registry.ParseModule(*module); err != nil {
			return usagef("--module: %v", err)
		}
	}
	if *wait <= 0 || *idle <= 0 {
		return usagef("--wait and --idle must be positive")
	}

	c, err := mf.connect(ctx)
	if err != nil {
		return err
	}
	defer c.Disconnect(100)
	reg := registry.New(report.Topics{Prefix: *mf.prefix}, nil)
	cs, err := registry.Collect(ctx, c, reg, registry.CollectOptions{Idle: *idle, Max: *wait})
	if err != nil {
		return opError{"mqtt", err}
	}
	now := time.Now()
	devs := reg.Devices(filter)
	unknown := 0
	if filter.Group != "" {
		f := filter
		f.Group = ""
		for _, d := range reg.Devices(f) {
			if d.GroupsUnknown() {
				unknown++
			}
		}
	}

	if *asJSON {
		enc := json.NewEncoder(env.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(devs); err != nil {
			return err
		}
	} else if len(devs) > 0 {
		tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tONLINE\tGROUPS\tMODULES\tLAST ERROR\tAGE")
		for _, d := range devs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", d.Device, onlineWord(&d), groupsOf(&d), modulesOf(&d),
				orDash(truncate(oneLine(d.LastError), 60)), ageOf(d.Time, now))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}

	online := 0
	for _, d := range devs {
		if d.Online {
			online++
		}
	}
	fmt.Fprintf(env.Stderr, "%s (%d online) of %d reporting\n", plural(len(devs), "device"), online, reg.Len())
	if st := reg.Stats(); st.Malformed > 0 {
		fmt.Fprintf(env.Stderr, "skipped %s (last: %s)\n", plural(int(st.Malformed), "malformed status message"), oneLine(st.LastMalformed.Error()))
	}
	if unknown > 0 {
		fmt.Fprintf(env.Stderr, "note: %s left no groups (a last will carries none); run without --group to see them\n", plural(unknown, "lost device"))
	}
	if !cs.Complete {
		fmt.Fprintf(env.Stderr, "note: statuses were still arriving after --wait %s; the list may be incomplete\n", *wait)
	}
	return nil
}

func onlineWord(d *registry.Device) string {
	switch {
	case d.Online:
		return "yes"
	case d.Vanished:
		return "lost"
	}
	return "no"
}

func groupsOf(d *registry.Device) string {
	if d.GroupsUnknown() {
		return "?"
	}
	return orDash(strings.Join(d.Groups, ","))
}

func modulesOf(d *registry.Device) string {
	var s []string
	for _, m := range d.Modules {
		v := m.Name + "@" + m.Version + " " + m.State
		if m.Target != "" && m.Target != m.Version {
			v += " (to " + m.Target + ")"
		}
		s = append(s, v)
	}
	return orDash(strings.Join(s, ", "))
}

// ageOf is how long ago t was, in its largest unit: 4s, 12m, 3h, 2d; "-" when unknown.
func ageOf(t, now time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := max(now.Sub(t), 0)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func truncate(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}

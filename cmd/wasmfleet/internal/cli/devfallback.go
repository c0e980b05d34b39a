package cli

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/wasmfleet/wasmfleet/cmd/wasmfleet/internal/devenv"
)

// The dev environment as a default: a command with S3 or MQTT flags that is given none of
// them, and runs where no WASMFLEET_S3_* or WASMFLEET_MQTT_* variable is set, takes its
// settings from ./.wasmfleet-dev/env, the file `wasmfleet dev` writes, when there is one.
// It says so on stderr. parse applies it, right after the command line is parsed, so that
// every command sees the settings in its flags as if they had been typed.

// devEnvPath is where the dev environment file is looked for: the current directory's
// .wasmfleet-dev (the default directory of `wasmfleet dev`).
var devEnvPath = filepath.Join(devenv.DefaultDir, devenv.EnvFileName)

// s3FlagNames, mqttFlagNames and devEnvNames are the flags and variables whose presence means the user chose
// where to go: the dev environment is then left alone.
var (
	s3FlagNames   = []string{"s3-endpoint", "bucket", "region", "s3-access-key", "s3-insecure", "s3-ca"}
	mqttFlagNames = []string{"broker", "ca", "cert", "key", "username"}
	devEnvNames   = []string{s3EndpointEnv, s3BucketEnv, s3RegionEnv, s3AccessKeyEnv, s3SecretKeyEnv, s3SecretFileEnv,
		s3InsecureEnv, s3CAEnv, mqttBrokersEnv, mqttUserEnv, mqttPasswordEnv, mqttPwFileEnv, mqttCAEnv, mqttCertEnv, mqttKeyEnv}
)

// devTargets are a flag set's S3 and MQTT flags, which the dev environment fills.
type devTargets struct {
	s3   *s3Flags
	mqtt *mqttFlags
}

// devPending holds the targets of flag sets not parsed yet; parse takes them out.
var devPending = struct {
	sync.Mutex
	m map[*flag.FlagSet]*devTargets
}{m: map[*flag.FlagSet]*devTargets{}}

func devTargetsOf(fs *flag.FlagSet) *devTargets {
	devPending.Lock()
	defer devPending.Unlock()
	t := devPending.m[fs]
	if t == nil {
		t = &devTargets{}
		devPending.m[fs] = t
	}
	return t
}

// applyDevEnv fills fs's S3 and MQTT flags from the dev environment file when fs has such
// flags, none of them was given, no S3 or MQTT variable is set, and the file exists.
func applyDevEnv(fs *flag.FlagSet) error {
	devPending.Lock()
	t := devPending.m[fs]
	delete(devPending.m, fs)
	devPending.Unlock()
	if t == nil {
		return nil
	}
	given := false
	fs.Visit(func(f *flag.Flag) {
		given = given || slices.Contains(s3FlagNames, f.Name) || slices.Contains(mqttFlagNames, f.Name)
	})
	for _, n := range devEnvNames {
		given = given || os.Getenv(n) != ""
	}
	if given {
		return nil
	}
	ef, err := devenv.ReadEnvFile(devEnvPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return opError{"dev-env", fmt.Errorf("%w (give S3 or MQTT flags, or start wasmfleet dev again to rewrite it)", err)}
	}
	set := func(name, value string) error {
		if fs.Lookup(name) == nil {
			return nil
		}
		if err := fs.Set(name, value); err != nil {
			return opError{"dev-env", fmt.Errorf("%s: %s: %w", devEnvPath, name, err)}
		}
		return nil
	}
	var where []string
	if t.s3 != nil {
		for _, kv := range [][2]string{{"s3-endpoint", ef.S3Endpoint}, {"bucket", ef.S3Bucket}, {"region", ef.S3Region},
			{"s3-access-key", ef.S3AccessKey}, {"s3-insecure", strconv.FormatBool(ef.S3Insecure)}} {
			if err := set(kv[0], kv[1]); err != nil {
				return err
			}
		}
		t.s3.devSecret = ef.S3SecretKey
		where = append(where, "s3 "+ef.S3Endpoint+" bucket "+ef.S3Bucket)
	}
	if t.mqtt != nil {
		for _, kv := range [][2]string{{"broker", ef.MQTTBrokers}, {"username", ef.MQTTUsername}} {
			if err := set(kv[0], kv[1]); err != nil {
				return err
			}
		}
		t.mqtt.devPassword = ef.MQTTPassword
		where = append(where, "broker "+ef.MQTTBrokers)
	}
	note := fmt.Sprintf("note: using the dev environment of %s (%s); give S3 or MQTT flags or WASMFLEET_* variables for another",
		devEnvPath, strings.Join(where, ", "))
	if !devenv.Running(filepath.Dir(devEnvPath)) {
		note += "; it is not running: start it with wasmfleet dev"
	}
	fmt.Fprintln(fs.Output(), note)
	return nil
}

// secretKey is the S3 secret key: the dev environment's when it is in use, else from
// WASMFLEET_S3_SECRET_KEY or the file WASMFLEET_S3_SECRET_KEY_FILE names.
func (f *s3Flags) secretKey() (string, error) {
	if f.devSecret != "" {
		return f.devSecret, nil
	}
	return secretFromEnv(s3SecretKeyEnv, s3SecretFileEnv)
}

// password is the MQTT password: the dev environment's when it is in use, else from
// WASMFLEET_MQTT_PASSWORD or the file WASMFLEET_MQTT_PASSWORD_FILE names.
func (f *mqttFlags) password() (string, error) {
	if f.devPassword != "" {
		return f.devPassword, nil
	}
	return secretFromEnv(mqttPasswordEnv, mqttPwFileEnv)
}

// Package devenv is `wasmfleet dev`: a whole fleet in one process, for trying wasmfleet and
// developing handlers on one machine. Open takes a dev directory (.wasmfleet-dev by
// default) and Start runs, on loopback ports:
//
//   - an MQTT broker (mochi-mqtt), one user with a generated password, its retained
//     messages (desired states, statuses) kept in DIR/retained.json;
//   - an S3-compatible store (gofakes3 on its bolt backend, DIR/s3.db) holding the bucket;
//   - the rollout controller (fleet/controller.Server) with the dev rollout key;
//   - the dashboard (Config.Dashboard), or a plain-text status page;
//   - N device agents (package agent, dev-1 ... dev-N), each with its data in DIR/agents/ID;
//
// and then, in the background, publishes the example handlers (modules/examples) signed with
// the dev release key, rolls each out to the agents' group in waves, and sends sample
// sensor events, so that handlers run and publish.
//
// # The dev directory
//
// keys/ holds a root, a release and a rollout key (encrypted, cosign's format, the password
// in keys/password) and the trust file keys/root.json that names them: made on the first
// run, as `wasmfleet keygen` and `wasmfleet trust init` would, and reused after. DIR/env
// (EnvFile) names the broker, the store, their credentials and the keys: the wasmfleet CLI
// reads it when run beside DIR without S3 or MQTT settings, and a shell can source it.
// DIR/agent.yaml configures a wasmfleet-agent that joins from outside. A lock file keeps a
// second `wasmfleet dev` out of a directory in use (ErrBusy).
//
// A second run in the same directory finds everything again: the keys, the bucket with its
// releases and rollouts, the retained messages, the agents' installed modules, and the
// ports of the last run when they are free. It publishes nothing that is there and starts
// no rollout for a handler the group runs already; a rollout left in progress is finished
// by the controller.
//
// # What it is not
//
// A production setup. The S3 store checks no request signature (any credentials are
// accepted), the broker has one user for everyone, and nothing is encrypted in transit:
// it listens on 127.0.0.1 unless told otherwise, and says so when told otherwise. Its
// broker and store are never the test doubles of the real ones: wasmfleet's integration
// tests run Mosquitto and versitygw.
//
// The package logs through the zerolog.Logger it is given and never prints.
package devenv

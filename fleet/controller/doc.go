// Package controller wires the rollout controller of fleet/rollout to the outside world:
// the bucket through minio-go (Store, every write conditional), the broker through paho
// (Publisher: retained, QoS 1, acknowledged; Feed: every device's retained status and
// update events into a rollout.Tracker), and the rollout keys (CheckSigners). Server is
// the whole of `wasmfleet serve`: it connects, reads the retained statuses, and runs
// rollout.Controller.Run until its context ends.
//
// For the dashboard (fleet/dashboard), the same subscription also feeds a Fleet: every
// device's latest status in a registry.Registry, its recent update events of every kind,
// and listeners told of each report (Server.Fleet).
//
// It also reads what an operator needs before starting a rollout: the group's current
// desired state, from the broker (CurrentDesired, verified as an agent would) or from the
// last rollout in the bucket (LatestDesired).
//
// # What the controller holds
//
// Rollout keys only. CheckSigners refuses a key that is not in the trust file's rollout
// role (the trust file keeps the roles apart, so a release or root key never is), and
// signs and verifies a probe desired state before the controller starts. A stolen
// controller can choose among signed releases and their order, never run new code.
//
// # State
//
// None of its own. The rollout documents and the audit records are in the bucket, the
// devices' reported state in retained messages; a Server that starts reads both. It does
// not tick before the broker's burst of retained statuses is over (Feed.WaitQuiet): a
// wave whose devices it has not heard of would have nobody pending, and pass.
//
// # Compare-and-swap, and a lease in the document
//
// Every write of a rollout document carries If-Match with the ETag that was read, every
// audit record If-None-Match: * (see RATIONALE.md); two controllers, or a controller and
// an operator, never overwrite each other. The lease that stops a stalled controller from
// publishing over a newer desired state lives in the document itself (fleet/rollout's
// "Two controllers"); there is no lease object.
//
// The package never prints: it takes a zerolog.Logger.
package controller

// Package dashboard is the fleet's web dashboard, served by `wasmfleet serve` next to the
// rollout controller from the same binary: server-rendered html/template pages, a small
// embedded script for live updates (Server-Sent Events) and a stylesheet, every asset
// embedded, nothing from a CDN, so it works on a closed network.
//
// # Pages
//
//   - / (overview): devices online and offline, versions per module, events and failures
//     per second per module (an SVG sparkline drawn on the server), active rollouts, and
//     the reports the controller dropped as malformed.
//   - /devices: the devices, paged, filtered, sorted and searched on the server, so that a
//     page costs the same at 10,000 devices; /devices/{id}: one device's modules, health
//     counters, last error and update history.
//   - /releases: what the bucket holds, with the signers' key ids and roles and the
//     capabilities each release asks for, in plain words.
//   - /rollouts and /rollouts/{id}: progress per wave (healthy, failed, silent, pending),
//     the abort reason, the history, and pause, resume and abort.
//   - /events: the Server-Sent Events stream. Its events only name what changed
//     ("devices", "rollouts", "rates"); the script then fetches the page's live part again
//     (?partial=1), so what the browser shows is always what the server renders.
//
// # Where the data comes from
//
// Everything is read from the controller.Server it runs beside: devices from its Fleet
// (fed by the controller's own MQTT subscription), wave tallies from its Tracker with the
// same rollout.Evaluate the controller judges with, rollouts and audit records from its
// Store (cached, and polled only while a browser listens), and releases from the
// publish.Bucket. The dashboard writes nothing but what an operator asks for, through the
// controller's Pause, Resume and Abort.
//
// # Safety
//
// Reading needs no login. Pause, resume and abort need the operator token configured on
// the server: POST /login exchanges it for a session cookie (HttpOnly, SameSite=Strict,
// Secure over TLS) and a per-session CSRF token that every form carries; each POST is also
// checked with net/http's CrossOriginProtection (Sec-Fetch-Site, Origin). Every action is
// written to the rollout's audit record with the actor "dashboard:NAME", NAME being what
// the operator typed at login. Everything shown is escaped by html/template (device ids,
// module names and error texts come from the field), and a Content-Security-Policy allows
// only the dashboard's own script and stylesheet. Query parameters are parsed strictly: a
// malformed or unknown one is a 400 that says which and why.
//
// The package never prints: it logs through the zerolog.Logger it is given.
package dashboard

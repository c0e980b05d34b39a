// Package config holds the device agent's configuration: the Config type, the YAML file
// it is read from, the WASMFLEET_* environment variables and overrides (the agent's
// flags) that take precedence over it, the defaults, and the validation that
// `wasmfleet-agent --check` runs. It does not connect to anything or start the agent.
//
// # Sources
//
// Load reads, setting by setting, each source over the one before:
//
//  1. the YAML file (DefaultPath unless told otherwise; example.yaml, embedded as
//     Example, shows and explains every key),
//  2. environment variables: WASMFLEET_ and the key path in upper case with dots as
//     underscores,
//  3. overrides: a map from key path to value, which the agent's flags fill.
//
// Then it applies the defaults (SetDefaults), validates (Validate) and reads the secret
// files. Parse does the same for a file's text alone. Everything wrong is reported at
// once, as Problems, each at its key path ("mqtt.brokers[1]") and with where the value
// came from ("line 4", "from WASMFLEET_MQTT_BROKERS", "from overrides").
//
// The file is strict: an unknown key, a key given twice, a value of the wrong type and
// YAML anchors are problems; a null value leaves a setting unset. In the environment and
// in overrides, lists are comma-separated (spaces around items and empty items are
// ignored) and other values are written as in the file. An empty environment variable
// is ignored; a WASMFLEET_ variable that is no setting is a problem, except
// WASMFLEET_CONFIG and WASMFLEET_KEY_PASSWORD, which belong to other wasmfleet code.
//
// # Environment variables
//
// One per setting, derived from the same struct tags as the YAML keys (see Settings):
//
//	WASMFLEET_DEVICE_ID                      device_id                  string
//	WASMFLEET_GROUPS                         groups                     list
//	WASMFLEET_MQTT_BROKERS                   mqtt.brokers               list
//	WASMFLEET_MQTT_CLIENT_ID                 mqtt.client_id             string
//	WASMFLEET_MQTT_USERNAME                  mqtt.username              string
//	WASMFLEET_MQTT_PASSWORD                  mqtt.password              string, secret
//	WASMFLEET_MQTT_PASSWORD_FILE             mqtt.password_file         string
//	WASMFLEET_MQTT_CA_FILE                   mqtt.ca_file               string
//	WASMFLEET_MQTT_CERT_FILE                 mqtt.cert_file             string
//	WASMFLEET_MQTT_KEY_FILE                  mqtt.key_file              string
//	WASMFLEET_MQTT_KEEP_ALIVE                mqtt.keep_alive            duration
//	WASMFLEET_MQTT_CONNECT_TIMEOUT           mqtt.connect_timeout       duration
//	WASMFLEET_MQTT_TOPIC_PREFIX              mqtt.topic_prefix          string
//	WASMFLEET_S3_ENDPOINT                    s3.endpoint                string
//	WASMFLEET_S3_BUCKET                      s3.bucket                  string
//	WASMFLEET_S3_REGION                      s3.region                  string
//	WASMFLEET_S3_ACCESS_KEY                  s3.access_key              string
//	WASMFLEET_S3_SECRET_KEY                  s3.secret_key              string, secret
//	WASMFLEET_S3_SECRET_KEY_FILE             s3.secret_key_file         string
//	WASMFLEET_S3_INSECURE                    s3.insecure                bool
//	WASMFLEET_S3_CA_FILE                     s3.ca_file                 string
//	WASMFLEET_TRUST_ROOT                     trust_root                 string
//	WASMFLEET_DATA_DIR                       data_dir                   string
//	WASMFLEET_POLICY_MAX_MEMORY              policy.max_memory          size
//	WASMFLEET_POLICY_MAX_TIMEOUT             policy.max_timeout         duration
//	WASMFLEET_POLICY_MAX_CONCURRENCY         policy.max_concurrency     int
//	WASMFLEET_POLICY_MAX_KV                  policy.max_kv              size
//	WASMFLEET_POLICY_ALLOWED_TOPICS          policy.allowed_topics      list
//	WASMFLEET_POLICY_MAX_MODULE_SIZE         policy.max_module_size     size
//	WASMFLEET_HEALTH_EVENTS                  health.events              int
//	WASMFLEET_HEALTH_WINDOW                  health.window              duration
//	WASMFLEET_HEALTH_MAX_FAILURE_RATIO       health.max_failure_ratio   number
//	WASMFLEET_STATUS_INTERVAL                status_interval            duration
//	WASMFLEET_OUTBOX_MAX_MESSAGES            outbox.max_messages        int
//	WASMFLEET_QUEUE_DEPTH                    queue.depth                int
//	WASMFLEET_METRICS_LISTEN                 metrics.listen             string
//	WASMFLEET_LOG_LEVEL                      log_level                  string
//
// # Secrets
//
// mqtt.password and s3.secret_key are of type Secret, which prints as "[redacted]" in
// every form (fmt, JSON, YAML, text, slog), and Config prints its Redacted copy (String,
// GoString, MarshalJSON, MarshalYAML, MarshalZerologObject), so a configuration can be
// logged whole. Prefer mqtt.password_file and s3.secret_key_file: Load reads them (one
// trailing newline trimmed) into Password and SecretKey. A secret and its file form set
// in the same source is a problem; set in different sources, the later source wins.
package config

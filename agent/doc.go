// Package agent is pgsidecar's composition root: it turns a resolved
// config.Config into repository stores (each driver wrapped by the storage
// decorators in one place), and runs the commands and the sidecar daemon on
// top of them. cmd/pgsidecar only parses arguments and calls into agent.
package agent

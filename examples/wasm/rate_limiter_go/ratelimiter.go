// An Erlang/OTP-style rate limiter as a WASM actor written in Go: one virtual actor per
// client key (`?key=CLIENT`), each keeping a sliding-window log of the requests it allowed.
// The same handlers as the Rust rate limiter (../rate_limiter):
//   - `configure {"limit": n, "window_ms": ms}`: at most n requests per ms (default 10 per
//     1000 ms);
//   - `check {}`: `{"allowed", "remaining", "retry_after_ms", ...}`, recording the request
//     when allowed;
//   - `status {}`: the window without recording anything;
//   - `crash {}`: panics (the Go runtime exits: a trap); the supervisor restarts the
//     activation and the next message is served by a fresh one, OTP style.
//
// Time is the host's journaled clock (`durability.now-ms`), so a durable deployment replays
// the same decisions.

package main

import (
	"bytes"
	"encoding/json"
	"fmt"
)

type window struct {
	Limit    uint64   `json:"limit"`
	WindowMs uint64   `json:"window_ms"`
	Allowed  []uint64 `json:"allowed"`
	Denied   uint64   `json:"denied"`
}

func defaultWindow() window { return window{Limit: 10, WindowMs: 1000, Allowed: []uint64{}} }

var state = defaultWindow()

func (w *window) expire(now uint64) {
	i := 0
	for i < len(w.Allowed) && w.Allowed[i]+w.WindowMs <= now {
		i++
	}
	w.Allowed = append([]uint64{}, w.Allowed[i:]...)
}

func (w *window) status(now uint64, allowed bool) map[string]any {
	used := uint64(len(w.Allowed))
	var retry, remaining uint64
	if used < w.Limit {
		remaining = w.Limit - used
	} else if len(w.Allowed) > 0 && w.Allowed[0]+w.WindowMs > now {
		retry = w.Allowed[0] + w.WindowMs - now
	}
	return map[string]any{
		"allowed":        allowed,
		"remaining":      remaining,
		"retry_after_ms": retry,
		"limit":          w.Limit,
		"window_ms":      w.WindowMs,
		"denied":         w.Denied,
	}
}

func describe() descriptor {
	return descriptor{
		facets:   []string{},
		handlers: []string{"configure", "check", "status", "crash"},
	}
}

func initActor(config []byte) *actorError {
	state = defaultWindow()
	return nil
}

func fail(code uint8, format string, args ...any) *actorError {
	return &actorError{code: code, message: fmt.Sprintf(format, args...)}
}

// positive reads a positive whole number field (absent or null: the default).
func positive(v map[string]any, field string, def uint64) (uint64, *actorError) {
	raw, ok := v[field]
	if !ok || raw == nil {
		return def, nil
	}
	n, isNum := raw.(json.Number)
	if !isNum {
		return 0, fail(codeBadRequest, "`%s` must be a positive whole number", field)
	}
	var u uint64
	if _, err := fmt.Sscan(n.String(), &u); err != nil || u == 0 || n.String() != fmt.Sprint(u) {
		return 0, fail(codeBadRequest, "`%s` must be a positive whole number", field)
	}
	return u, nil
}

func decode(payload []byte) (map[string]any, *actorError) {
	v := map[string]any{}
	if len(payload) == 0 {
		return v, nil
	}
	d := json.NewDecoder(bytes.NewReader(payload))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		return nil, fail(codeBadRequest, "payload is not a JSON object: %v", err)
	}
	return v, nil
}

func reply(v any) ([]byte, *actorError) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fail(codeInternal, "%v", err)
	}
	return b, nil
}

func handle(msgType string, payload []byte) ([]byte, *actorError) {
	v, err := decode(payload)
	if err != nil {
		return nil, err
	}
	switch msgType {
	case "configure":
		limit, err := positive(v, "limit", 10)
		if err != nil {
			return nil, err
		}
		windowMs, err := positive(v, "window_ms", 1000)
		if err != nil {
			return nil, err
		}
		now, err := nowMs()
		if err != nil {
			return nil, err
		}
		state = window{Limit: limit, WindowMs: windowMs, Allowed: []uint64{}}
		return reply(state.status(now, true))
	case "check":
		now, err := nowMs()
		if err != nil {
			return nil, err
		}
		state.expire(now)
		allowed := uint64(len(state.Allowed)) < state.Limit
		if allowed {
			state.Allowed = append(state.Allowed, now)
		} else {
			state.Denied++
		}
		return reply(state.status(now, allowed))
	case "status":
		now, err := nowMs()
		if err != nil {
			return nil, err
		}
		state.expire(now)
		return reply(state.status(now, uint64(len(state.Allowed)) < state.Limit))
	case "crash":
		panic("crash asked for: let it crash")
	default:
		return nil, fail(codeNotFound, "no handler for %q", msgType)
	}
}

func snapshot() []byte {
	b, err := json.Marshal(state)
	if err != nil {
		return nil
	}
	return b
}

func restore(b []byte) *actorError {
	w := defaultWindow()
	if err := json.Unmarshal(b, &w); err != nil {
		return fail(codeBadRequest, "snapshot is not JSON: %v", err)
	}
	if w.Limit == 0 || w.WindowMs == 0 {
		return fail(codeBadRequest, "snapshot has a zero limit or window")
	}
	if w.Allowed == nil {
		w.Allowed = []uint64{}
	}
	state = w
	return nil
}

package github

import (
	"encoding/json"
)

// PingEvent is what Nimbus reads of a ping delivery, sent when a hook is
// created. It must be answered with a 2xx.
type PingEvent struct {
	Zen    string
	HookID int64
	// AppID is hook.app_id: set when the hook belongs to a GitHub App.
	AppID int64
}

// ParsePing decodes the body of a ping delivery. hook_id is required; zen and
// the app id are read when present. Errors wrap ErrInvalidPayload.
func ParsePing(body []byte) (PingEvent, error) {
	var w struct {
		Zen    string `json:"zen"`
		HookID *int64 `json:"hook_id"`
		Hook   *struct {
			AppID int64 `json:"app_id"`
		} `json:"hook"`
	}
	if err := json.Unmarshal(body, &w); err != nil {
		return PingEvent{}, jsonError(err)
	}
	if w.HookID == nil {
		return PingEvent{}, fieldErr("hook_id", "is missing")
	}
	if *w.HookID <= 0 {
		return PingEvent{}, fieldErr("hook_id", "must be positive, got %d", *w.HookID)
	}
	if !validText(w.Zen, maxTextLen) {
		return PingEvent{}, fieldErr("zen", "is longer than %d bytes or has control characters", maxTextLen)
	}
	ev := PingEvent{Zen: w.Zen, HookID: *w.HookID}
	if w.Hook != nil {
		if w.Hook.AppID < 0 {
			return PingEvent{}, fieldErr("hook.app_id", "must not be negative, got %d", w.Hook.AppID)
		}
		ev.AppID = w.Hook.AppID
	}
	return ev, nil
}

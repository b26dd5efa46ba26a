package api

import (
	"encoding/json"

	"github.com/nimbus-build/nimbus/internal/rbs"
)

func decodeRequest(s string) (rbs.ServerRequest, error) {
	var req rbs.ServerRequest
	err := json.Unmarshal([]byte(s), &req)
	return req, err
}

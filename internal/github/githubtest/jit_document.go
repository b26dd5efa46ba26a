package githubtest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
)

// JITDocument is what the emulator's encoded_jit_config holds: base64 of
// this JSON. (GitHub's real one holds the runner's settings and
// credentials; this one is simpler so that a fake runner script can decode
// it with base64 and print its runner name.)
type JITDocument struct {
	RunnerID      int64    `json:"runner_id"`
	RunnerName    string   `json:"runner_name"`
	Labels        []string `json:"labels"`
	RunnerGroupID int64    `json:"runner_group_id"`
	WorkFolder    string   `json:"work_folder"`
	// URL is the org or repository the runner serves.
	URL string `json:"url"`
	// Credential is a random secret standing in for the runner's keys.
	Credential string `json:"credential"`
}

func encodeJITDocument(d JITDocument) (string, error) {
	b, err := json.Marshal(d)
	if err != nil {
		return "", fmt.Errorf("encode jit document: %w", err)
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

// DecodeJITConfig decodes an encoded_jit_config issued by the emulator.
func DecodeJITConfig(encoded string) (JITDocument, error) {
	raw, err := base64.StdEncoding.DecodeString(encoded)
	if err != nil {
		return JITDocument{}, fmt.Errorf("decode jit config: %w", err)
	}
	var d JITDocument
	if err := json.Unmarshal(raw, &d); err != nil {
		return JITDocument{}, fmt.Errorf("decode jit config: %w", err)
	}
	return d, nil
}

package github

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"path"
	"strconv"
	"strings"
)

// DefaultRunnerGroupID is the id of the "Default" runner group.
const DefaultRunnerGroupID = 1

// JITRequest describes a just-in-time runner to create.
type JITRequest struct {
	// Name is the runner's name: 1 to 64 ASCII letters, digits, '-', '_'
	// or '.', unique in its target.
	Name string
	// Labels are the runner's labels: 1 to 100, each 1 to 256 bytes with
	// no commas, control characters or surrounding spaces, no two equal
	// ignoring case.
	Labels []string
	// RunnerGroupID is the runner group; 0 means DefaultRunnerGroupID.
	RunnerGroupID int64
	// WorkFolder is the runner's work directory, relative to its install
	// directory; "" means "_work".
	WorkFolder string
}

// JITConfig is a created just-in-time runner. EncodedJITConfig is a secret
// credential for that one runner: pass it to `run.sh --jitconfig` and
// nowhere else. String and LogValue redact it.
type JITConfig struct {
	RunnerID         int64
	RunnerName       string
	EncodedJITConfig string
}

func (c JITConfig) String() string {
	return fmt.Sprintf("runner %d %q (jit config redacted)", c.RunnerID, c.RunnerName)
}

// LogValue keeps the encoded config out of logs.
func (c JITConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.Int64("runner_id", c.RunnerID), slog.String("runner_name", c.RunnerName))
}

// Validate checks r the way GitHub would, and a little more strictly, so
// that bad input fails here with a clear message rather than at GitHub.
func (r JITRequest) Validate() error {
	if !validRunnerName(r.Name) {
		return fmt.Errorf("runner name %q must be 1 to %d ASCII letters, digits, '-', '_' or '.'",
			truncate(r.Name, maxRunnerNameLen), maxRunnerNameLen)
	}
	if err := ValidateRunnerLabels(r.Labels); err != nil {
		return err
	}
	if r.RunnerGroupID < 0 {
		return fmt.Errorf("runner group id must be positive, got %d", r.RunnerGroupID)
	}
	if f := r.WorkFolder; f != "" {
		if len(f) > 255 || path.IsAbs(f) || strings.Contains(f, "\\") || path.Clean(f) != f ||
			f == ".." || strings.HasPrefix(f, "../") || !validText(f, 255) {
			return fmt.Errorf("work folder %q must be a clean relative path inside the runner's directory", truncate(f, 255))
		}
	}
	return nil
}

// GenerateJITConfig creates a just-in-time runner at t through the
// installation (POST .../actions/runners/generate-jitconfig). The runner
// takes exactly one job and then deregisters itself.
//
// A transient failure is retried. A retried POST that GitHub had in fact
// completed fails with a name conflict (the runner exists but its config was
// lost); such a runner never comes online and can be removed by id or left
// for GitHub to expire. Use a fresh name to try again.
func (a *App) GenerateJITConfig(ctx context.Context, installationID int64, t RunnerTarget, r JITRequest) (JITConfig, error) {
	if installationID <= 0 {
		return JITConfig{}, fmt.Errorf("generate jit config: installation id must be positive, got %d", installationID)
	}
	if err := t.Validate(); err != nil {
		return JITConfig{}, fmt.Errorf("generate jit config: %w", err)
	}
	if err := r.Validate(); err != nil {
		return JITConfig{}, fmt.Errorf("generate jit config for %s: %w", t, err)
	}
	group := r.RunnerGroupID
	if group == 0 {
		group = DefaultRunnerGroupID
	}
	workFolder := r.WorkFolder
	if workFolder == "" {
		workFolder = "_work"
	}
	body, err := json.Marshal(struct {
		Name          string   `json:"name"`
		RunnerGroupID int64    `json:"runner_group_id"`
		Labels        []string `json:"labels"`
		WorkFolder    string   `json:"work_folder"`
	}{r.Name, group, r.Labels, workFolder})
	if err != nil {
		return JITConfig{}, fmt.Errorf("generate jit config: encode request: %w", err)
	}
	var resp struct {
		Runner struct {
			ID   int64  `json:"id"`
			Name string `json:"name"`
		} `json:"runner"`
		EncodedJITConfig string `json:"encoded_jit_config"`
	}
	p := t.runnersPath() + "/generate-jitconfig"
	if err := a.installationDo(ctx, installationID, http.MethodPost, p, body, http.StatusCreated, &resp); err != nil {
		return JITConfig{}, fmt.Errorf("generate jit config for %s: %w", t, err)
	}
	switch {
	case resp.Runner.ID <= 0:
		return JITConfig{}, fmt.Errorf("generate jit config for %s: response has no runner id", t)
	case resp.EncodedJITConfig == "":
		return JITConfig{}, fmt.Errorf("generate jit config for %s: response has no encoded_jit_config", t)
	}
	if _, err := base64.StdEncoding.DecodeString(resp.EncodedJITConfig); err != nil {
		return JITConfig{}, fmt.Errorf("generate jit config for %s: encoded_jit_config is not base64", t)
	}
	name := resp.Runner.Name
	if name == "" {
		name = r.Name
	}
	cfg := JITConfig{RunnerID: resp.Runner.ID, RunnerName: name, EncodedJITConfig: resp.EncodedJITConfig}
	a.log.InfoContext(ctx, "jit runner created", "installation_id", installationID,
		"target", t.String(), "runner", cfg)
	return cfg, nil
}

// RemoveRunner deletes a runner from t (DELETE .../actions/runners/{id}),
// e.g. a JIT runner whose job lease was lost before it started. A runner
// that is already gone gives an error matching ErrNotFound, which a caller
// treating removal as idempotent can ignore.
func (a *App) RemoveRunner(ctx context.Context, installationID int64, t RunnerTarget, runnerID int64) error {
	if installationID <= 0 {
		return fmt.Errorf("remove runner: installation id must be positive, got %d", installationID)
	}
	if runnerID <= 0 {
		return fmt.Errorf("remove runner: runner id must be positive, got %d", runnerID)
	}
	if err := t.Validate(); err != nil {
		return fmt.Errorf("remove runner: %w", err)
	}
	p := t.runnersPath() + "/" + strconv.FormatInt(runnerID, 10)
	if err := a.installationDo(ctx, installationID, http.MethodDelete, p, nil, http.StatusNoContent, nil); err != nil {
		return fmt.Errorf("remove runner %d from %s: %w", runnerID, t, err)
	}
	a.log.InfoContext(ctx, "runner removed", "installation_id", installationID,
		"target", t.String(), "runner_id", runnerID)
	return nil
}

// GoString redacts the encoded config from %#v too.
func (c JITConfig) GoString() string {
	return fmt.Sprintf("github.JITConfig{RunnerID:%d, RunnerName:%q, EncodedJITConfig:(redacted)}", c.RunnerID, c.RunnerName)
}

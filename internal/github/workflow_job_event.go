package github

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ErrUnknownAction means a workflow_job payload carries an action Nimbus does
// not handle. GitHub may add actions; callers should acknowledge such
// deliveries (2xx) and ignore them.
var ErrUnknownAction = errors.New("unknown workflow_job action")

// WorkflowJobAction is the "action" of a workflow_job delivery.
type WorkflowJobAction string

// The workflow_job actions GitHub sends. Deliveries may arrive in any order:
// in_progress before queued, or completed alone.
const (
	ActionQueued     WorkflowJobAction = "queued"
	ActionWaiting    WorkflowJobAction = "waiting"
	ActionInProgress WorkflowJobAction = "in_progress"
	ActionCompleted  WorkflowJobAction = "completed"
)

// Valid reports whether a is one of the four known actions.
func (a WorkflowJobAction) Valid() bool {
	switch a {
	case ActionQueued, ActionWaiting, ActionInProgress, ActionCompleted:
		return true
	}
	return false
}

// Account types of a repository's owner.
const (
	AccountOrganization = "Organization"
	AccountUser         = "User"
)

// Bounds on free-text fields of a payload.
const (
	maxTextLen     = 1024 // job, workflow and branch names
	maxKeywordLen  = 32   // status, conclusion
	maxRunnerField = 256  // runner names as GitHub reports them
)

// WorkflowJobEvent is a validated workflow_job delivery: the fields Nimbus
// uses, named after GitHub's.
type WorkflowJobEvent struct {
	Action     WorkflowJobAction
	Job        WorkflowJob
	Repository Repository
	// InstallationID is installation.id: the GitHub App installation to
	// act through. 0 when the delivery came from a repository or org hook
	// rather than an App.
	InstallationID int64
	// Organization is the top-level organization; zero (ID 0) when the
	// repository is owned by a user.
	Organization Organization
}

// WorkflowJob is the workflow_job object of a delivery.
type WorkflowJob struct {
	ID    int64
	RunID int64
	// RunAttempt is 1 in old payloads that lack it.
	RunAttempt int64
	Name       string
	// Labels are the job's runs-on labels; empty when it targets a runner
	// group alone.
	Labels []string
	// Status is the job's status: queued, waiting, in_progress, completed
	// (GitHub also documents requested and pending).
	Status string
	// Conclusion is set once completed: success, failure, cancelled,
	// skipped, timed_out, action_required, neutral. Empty before.
	Conclusion string
	// RunnerID and RunnerName name the runner that took the job; zero and
	// empty while queued. A queued job goes to any idle runner with
	// matching labels, so bind a job to a runner by the in_progress
	// delivery's RunnerName, never by which runner was started for it.
	RunnerID     int64
	RunnerName   string
	HeadSHA      string
	HeadBranch   string // may be empty
	WorkflowName string // empty in old payloads
}

// Repository is the repository object of a delivery.
type Repository struct {
	ID       int64
	Name     string
	FullName string // "owner/name"
	Private  bool
	Owner    Account
	// DefaultBranch is the repository's default branch ("" in payloads
	// without it).
	DefaultBranch string
}

// Account is a repository's owner. It is the tenant: an org's id and login
// come from here.
type Account struct {
	ID    int64
	Login string
	Type  string // AccountOrganization or AccountUser
}

// Organization is the organization object of a delivery.
type Organization struct {
	ID    int64
	Login string
}

// JobKey returns the idempotency key of the job this delivery is about:
// repository id, workflow job id and run attempt. Every delivery about the
// same attempt of the same job has the same key, in whatever order they come.
func (ev WorkflowJobEvent) JobKey() string {
	return fmt.Sprintf("%d/%d/%d", ev.Repository.ID, ev.Job.ID, ev.Job.RunAttempt)
}

// wire types: the narrow part of GitHub's JSON that Nimbus reads. Pointers
// tell a missing or null field from a zero one.
type (
	wireWorkflowJobEvent struct {
		Action       *string           `json:"action"`
		WorkflowJob  *wireWorkflowJob  `json:"workflow_job"`
		Repository   *wireRepository   `json:"repository"`
		Installation *wireInstallation `json:"installation"`
		Organization *wireAccount      `json:"organization"`
	}
	wireWorkflowJob struct {
		ID           *int64   `json:"id"`
		RunID        *int64   `json:"run_id"`
		RunAttempt   *int64   `json:"run_attempt"`
		Name         *string  `json:"name"`
		Labels       []string `json:"labels"`
		Status       *string  `json:"status"`
		Conclusion   *string  `json:"conclusion"`
		RunnerID     *int64   `json:"runner_id"`
		RunnerName   *string  `json:"runner_name"`
		HeadSHA      *string  `json:"head_sha"`
		HeadBranch   *string  `json:"head_branch"`
		WorkflowName *string  `json:"workflow_name"`
	}
	wireRepository struct {
		ID            *int64       `json:"id"`
		Name          *string      `json:"name"`
		FullName      *string      `json:"full_name"`
		Private       bool         `json:"private"`
		Owner         *wireAccount `json:"owner"`
		DefaultBranch *string      `json:"default_branch"`
	}
	wireAccount struct {
		ID    *int64  `json:"id"`
		Login *string `json:"login"`
		Type  *string `json:"type"`
	}
	wireInstallation struct {
		ID *int64 `json:"id"`
	}
)

// ParseWorkflowJob decodes and validates the body of a workflow_job delivery.
//
// An action other than queued, waiting, in_progress or completed gives an
// error wrapping ErrUnknownAction (acknowledge and ignore it). Anything else
// wrong gives an error wrapping ErrInvalidPayload that names the field.
func ParseWorkflowJob(body []byte) (WorkflowJobEvent, error) {
	var w wireWorkflowJobEvent
	if err := json.Unmarshal(body, &w); err != nil {
		return WorkflowJobEvent{}, jsonError(err)
	}
	if w.Action == nil {
		return WorkflowJobEvent{}, fieldErr("action", "is missing")
	}
	action := WorkflowJobAction(*w.Action)
	if !action.Valid() {
		return WorkflowJobEvent{}, fmt.Errorf("%w %q", ErrUnknownAction, truncate(*w.Action, maxKeywordLen))
	}
	ev, err := w.event(action)
	if err != nil {
		return WorkflowJobEvent{}, err
	}
	if err := ev.Validate(); err != nil {
		return WorkflowJobEvent{}, err
	}
	return ev, nil
}

// event checks that required fields are present and copies them out,
// applying GitHub's defaults for old payloads.
func (w *wireWorkflowJobEvent) event(action WorkflowJobAction) (WorkflowJobEvent, error) {
	ev := WorkflowJobEvent{Action: action}
	if w.WorkflowJob == nil {
		return ev, fieldErr("workflow_job", "is missing")
	}
	var err error
	if ev.Job, err = w.WorkflowJob.job(); err != nil {
		return ev, err
	}
	if w.Repository == nil {
		return ev, fieldErr("repository", "is missing")
	}
	if ev.Repository, err = w.Repository.repository(); err != nil {
		return ev, err
	}
	if in := w.Installation; in != nil {
		if in.ID == nil {
			return ev, fieldErr("installation.id", "is missing")
		}
		ev.InstallationID = *in.ID
		if ev.InstallationID <= 0 {
			return ev, fieldErr("installation.id", "must be positive, got %d", ev.InstallationID)
		}
	}
	if o := w.Organization; o != nil {
		switch {
		case o.ID == nil:
			return ev, fieldErr("organization.id", "is missing")
		case o.Login == nil:
			return ev, fieldErr("organization.login", "is missing")
		}
		ev.Organization = Organization{ID: *o.ID, Login: *o.Login}
		if ev.Organization.ID <= 0 {
			return ev, fieldErr("organization.id", "must be positive, got %d", ev.Organization.ID)
		}
	}
	return ev, nil
}

func (j *wireWorkflowJob) job() (WorkflowJob, error) {
	var out WorkflowJob
	switch {
	case j.ID == nil:
		return out, fieldErr("workflow_job.id", "is missing")
	case j.RunID == nil:
		return out, fieldErr("workflow_job.run_id", "is missing")
	case j.Name == nil:
		return out, fieldErr("workflow_job.name", "is missing")
	case j.Status == nil:
		return out, fieldErr("workflow_job.status", "is missing")
	case j.HeadSHA == nil:
		return out, fieldErr("workflow_job.head_sha", "is missing")
	}
	out = WorkflowJob{
		ID:           *j.ID,
		RunID:        *j.RunID,
		RunAttempt:   1, // absent in payloads from before re-runs existed
		Name:         *j.Name,
		Status:       *j.Status,
		Conclusion:   deref(j.Conclusion),
		RunnerName:   deref(j.RunnerName),
		HeadSHA:      *j.HeadSHA,
		HeadBranch:   deref(j.HeadBranch),
		WorkflowName: deref(j.WorkflowName),
	}
	if j.RunAttempt != nil {
		out.RunAttempt = *j.RunAttempt
	}
	if j.RunnerID != nil {
		out.RunnerID = *j.RunnerID
	}
	if len(j.Labels) > 0 {
		out.Labels = j.Labels
	}
	return out, nil
}

func (r *wireRepository) repository() (Repository, error) {
	switch {
	case r.ID == nil:
		return Repository{}, fieldErr("repository.id", "is missing")
	case r.Name == nil:
		return Repository{}, fieldErr("repository.name", "is missing")
	case r.FullName == nil:
		return Repository{}, fieldErr("repository.full_name", "is missing")
	case r.Owner == nil:
		return Repository{}, fieldErr("repository.owner", "is missing")
	case r.Owner.ID == nil:
		return Repository{}, fieldErr("repository.owner.id", "is missing")
	case r.Owner.Login == nil:
		return Repository{}, fieldErr("repository.owner.login", "is missing")
	case r.Owner.Type == nil:
		return Repository{}, fieldErr("repository.owner.type", "is missing")
	}
	return Repository{
		ID: *r.ID, Name: *r.Name, FullName: *r.FullName, Private: r.Private,
		Owner:         Account{ID: *r.Owner.ID, Login: *r.Owner.Login, Type: *r.Owner.Type},
		DefaultBranch: deref(r.DefaultBranch),
	}, nil
}

// Validate checks an event's values: what ParseWorkflowJob guarantees of
// every event it returns. Errors wrap ErrInvalidPayload and name the field.
func (ev WorkflowJobEvent) Validate() error {
	if !ev.Action.Valid() {
		return fieldErr("action", "is not one of queued, waiting, in_progress, completed")
	}
	if err := ev.Job.validate(ev.Action); err != nil {
		return err
	}
	if err := ev.Repository.validate(); err != nil {
		return err
	}
	if ev.InstallationID < 0 {
		return fieldErr("installation.id", "must be positive, got %d", ev.InstallationID)
	}
	o := ev.Organization
	if o == (Organization{}) {
		return nil
	}
	switch {
	case o.ID <= 0:
		return fieldErr("organization.id", "must be positive, got %d", o.ID)
	case !validPathName(o.Login, maxLoginLen):
		return fieldErr("organization.login", "is not a valid login")
	case ev.Repository.Owner.Type == AccountOrganization && o.ID != ev.Repository.Owner.ID:
		return fieldErr("organization.id", "is %d but the repository's owner is %d", o.ID, ev.Repository.Owner.ID)
	}
	return nil
}

func (j *WorkflowJob) validate(action WorkflowJobAction) error {
	switch {
	case j.ID <= 0:
		return fieldErr("workflow_job.id", "must be positive, got %d", j.ID)
	case j.RunID <= 0:
		return fieldErr("workflow_job.run_id", "must be positive, got %d", j.RunID)
	case j.RunAttempt <= 0:
		return fieldErr("workflow_job.run_attempt", "must be positive, got %d", j.RunAttempt)
	case !validText(j.Name, maxTextLen):
		return fieldErr("workflow_job.name", "is longer than %d bytes or has control characters", maxTextLen)
	case len(j.Labels) > maxLabels:
		return fieldErr("workflow_job.labels", "has %d labels, at most %d allowed", len(j.Labels), maxLabels)
	case !validKeyword(j.Status):
		return fieldErr("workflow_job.status", "is not a status keyword")
	case j.Conclusion != "" && !validKeyword(j.Conclusion):
		return fieldErr("workflow_job.conclusion", "is not a conclusion keyword")
	case action == ActionCompleted && j.Conclusion == "":
		return fieldErr("workflow_job.conclusion", "is missing on a completed job")
	case j.RunnerID < 0:
		return fieldErr("workflow_job.runner_id", "must not be negative, got %d", j.RunnerID)
	case !validText(j.RunnerName, maxRunnerField):
		return fieldErr("workflow_job.runner_name", "is longer than %d bytes or has control characters", maxRunnerField)
	case action == ActionInProgress && j.RunnerName == "":
		return fieldErr("workflow_job.runner_name", "is missing on an in_progress job")
	case !validSHA(j.HeadSHA):
		return fieldErr("workflow_job.head_sha", "is not a 40 or 64 digit lowercase hex object id")
	case !validText(j.HeadBranch, maxTextLen):
		return fieldErr("workflow_job.head_branch", "is longer than %d bytes or has control characters", maxTextLen)
	case !validText(j.WorkflowName, maxTextLen):
		return fieldErr("workflow_job.workflow_name", "is longer than %d bytes or has control characters", maxTextLen)
	}
	for i, l := range j.Labels {
		if err := validateLabel(l); err != nil {
			return fieldErr(fmt.Sprintf("workflow_job.labels[%d]", i), "%v", err)
		}
	}
	return nil
}

func (r *Repository) validate() error {
	switch {
	case r.ID <= 0:
		return fieldErr("repository.id", "must be positive, got %d", r.ID)
	case !validPathName(r.Name, maxRepoNameLen):
		return fieldErr("repository.name", "is not a valid repository name")
	case r.Owner.ID <= 0:
		return fieldErr("repository.owner.id", "must be positive, got %d", r.Owner.ID)
	case !validPathName(r.Owner.Login, maxLoginLen):
		return fieldErr("repository.owner.login", "is not a valid login")
	case r.Owner.Type != AccountOrganization && r.Owner.Type != AccountUser:
		return fieldErr("repository.owner.type", "must be %q or %q", AccountOrganization, AccountUser)
	case r.DefaultBranch != "" && !validBranch(r.DefaultBranch):
		return fieldErr("repository.default_branch", "is not a branch name")
	}
	owner, name, ok := strings.Cut(r.FullName, "/")
	if !ok || !strings.EqualFold(owner, r.Owner.Login) || !strings.EqualFold(name, r.Name) {
		return fieldErr("repository.full_name", "is not repository.owner.login/repository.name")
	}
	return nil
}

// jsonError turns a decoding error into a payload error that says where.
func jsonError(err error) error {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Errorf("%w: not valid JSON at offset %d", ErrInvalidPayload, syn.Offset)
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			field = "(top level)"
		}
		return fieldErr(field, "has a JSON %s where %s is expected", typ.Value, typ.Type)
	}
	return fmt.Errorf("%w: %v", ErrInvalidPayload, err)
}

// validKeyword reports whether s looks like a GitHub status or conclusion:
// lowercase letters and underscores.
func validKeyword(s string) bool {
	if s == "" || len(s) > maxKeywordLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !(c >= 'a' && c <= 'z') && c != '_' {
			return false
		}
	}
	return true
}

// validSHA reports whether s is a git object id: SHA-1 or SHA-256, in
// lowercase hex as GitHub writes them.
func validSHA(s string) bool {
	if len(s) != 40 && len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isDigit(c) && !(c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

// truncate bounds an untrusted string before it goes into an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

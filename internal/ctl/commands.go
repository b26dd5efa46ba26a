package ctl

import (
	"flag"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nimbus-build/nimbus/internal/apiclient"
	"github.com/nimbus-build/nimbus/internal/apiv1"
	"github.com/nimbus-build/nimbus/internal/config"
)

func commands() []command {
	return []command{
		runCommand(),
		logsSearchCommand(),
		logsCommand(),
		insightsCommand(),
		{name: "jobs list", help: "List the org's jobs, newest first.", flags: func(fs *flag.FlagSet) {
			fs.String("state", "", "only jobs in this state (queued, leased, running, succeeded, failed, cancelled)")
			fs.Int("limit", 50, "at most this many")
		}, run: jobsList},
		{name: "jobs show", args: "JOB", help: "Show one job.", run: jobsShow},
		{name: "jobs cancel", args: "JOB", help: "Cancel a job: a queued one at once, a running one within seconds.", run: jobsCancel},
		{name: "agents join-token", help: "Create a one-time join token that enrolls one agent.", flags: func(fs *flag.FlagSet) {
			fs.String("labels", "", "comma-separated labels the agent may serve (required)")
			fs.Int("max-jobs", 0, "most jobs the agent may run at once (0: no limit)")
			fs.Duration("expires", 24*time.Hour, "how long the token is valid")
		}, run: agentsJoinToken},
		{name: "agents list", help: "List the org's agents.", run: agentsList},
		{name: "agents disable", args: "AGENT", help: "Disable an agent: its credential stops working at once.", run: agentsDisable},
		{name: "tokens create", help: "Create an API token (the secret is shown once).", flags: func(fs *flag.FlagSet) {
			fs.String("name", "", "who or what the token is for (required)")
			fs.String("role", "developer", "viewer, developer, ci, admin or owner (at most your own)")
			fs.Duration("expires", 0, "lifetime (0: never expires)")
		}, run: tokensCreate},
		{name: "tokens list", help: "List the org's API tokens.", run: tokensList},
		{name: "tokens revoke", args: "TOKEN", help: "Revoke an API token, at once.", run: tokensRevoke},
		{name: "orgs list", help: "List orgs (owner).", run: orgsList},
		{name: "orgs create", args: "NAME", help: "Create an org and an admin token for it (owner).", flags: githubFlags, run: orgsCreate},
		{name: "orgs link", args: "ORG", help: "Link an org to a GitHub account: its workflow_job webhooks create jobs there (owner).", flags: githubFlags, run: orgsLink},
		{name: "audit", help: "Show the org's audit log, newest first (admin).", flags: func(fs *flag.FlagSet) {
			fs.Int("limit", 50, "at most this many entries")
		}, run: auditList},
		{name: "cache trust", help: "Show what the org trusts to write its build cache; with flags, change it (admin).", flags: func(fs *flag.FlagSet) {
			fs.String("untrusted-refs", "-", "comma-separated ref patterns whose jobs get read-only cache credentials (\"\" for none; - keeps them)")
			fs.String("ac-write-refs", "-", "comma-separated ref patterns whose trusted jobs may write the Bazel action cache (- keeps them)")
		}, run: cacheTrust},
		{name: "keys list", help: "List the signing keys (owner).", run: keysList},
		{name: "keys rotate", help: "Rotate the signing key; the old one verifies until its credentials expire (owner).", run: keysRotate},
		{name: "webhook-secrets rotate", help: "Add a new GitHub webhook secret; old ones stay valid until retired (owner).", run: webhookRotate},
		{name: "webhook-secrets retire", help: "Keep only the newest GitHub webhook secret (owner).", run: webhookRetire},
		{name: "whoami", help: "Show who the token is.", run: whoami},
		{name: "sessions list", help: "List remote Bazel sessions (your own; an admin sees the org's).", flags: func(fs *flag.FlagSet) {
			fs.Bool("all", false, "include ended sessions")
		}, run: sessionsList},
		{name: "sessions stop", args: "SESSION", help: "Stop a remote Bazel session (its Bazel server on the agent).", run: sessionsStop},
		egressCommand(),
	}
}

func githubFlags(fs *flag.FlagSet) {
	fs.String("github-login", "", "GitHub account (org or user) login")
	fs.Int64("github-id", 0, "GitHub account numeric id (repository.owner.id in webhooks)")
}

func flagString(fs *flag.FlagSet, name string) string { return fs.Lookup(name).Value.String() }

func flagInt(fs *flag.FlagSet, name string) int64 {
	n, _ := strconv.ParseInt(fs.Lookup(name).Value.String(), 10, 64)
	return n
}

func flagDuration(fs *flag.FlagSet, name string) time.Duration {
	d, _ := time.ParseDuration(fs.Lookup(name).Value.String())
	return d
}

// oneArg returns the single positional argument.
func oneArg(fs *flag.FlagSet, what string) (string, error) {
	if fs.NArg() != 1 {
		return "", usagef("want exactly one %s", what)
	}
	return fs.Arg(0), nil
}

func table(e *env, header string, rows [][]string) {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, header)
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	tw.Flush()
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t).Round(time.Second)
	switch {
	case d < time.Minute:
		return d.String() + " ago"
	case d < time.Hour:
		return fmt.Sprintf("%dm ago", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh ago", int(d.Hours()))
	}
	return t.Format("2006-01-02")
}

func jobsList(e *env, g *globals, fs *flag.FlagSet) error {
	c, err := g.client(e)
	if err != nil {
		return err
	}
	list, err := c.ListJobs(e.ctx, apiclient.JobQuery{State: flagString(fs, "state"), Limit: int(flagInt(fs, "limit"))})
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(e.stdout, list)
	}
	var rows [][]string
	for _, j := range list.Jobs {
		what := strings.Join(j.Argv, " ")
		if j.GitHub != nil {
			what = j.GitHub.Repository + " " + j.GitHub.Name
		}
		if len(what) > 50 {
			what = what[:47] + "..."
		}
		exit := "-"
		if j.ExitCode != nil {
			exit = strconv.Itoa(*j.ExitCode)
		}
		rows = append(rows, []string{j.ID, j.State, exit, j.Source, ago(j.CreatedAt), what})
	}
	table(e, "ID\tSTATE\tEXIT\tSOURCE\tCREATED\tCOMMAND", rows)
	return nil
}

func getJob(e *env, g *globals, id string) (apiv1.Job, error) {
	c, err := g.client(e)
	if err != nil {
		return apiv1.Job{}, err
	}
	return c.GetJob(e.ctx, id)
}

func jobsShow(e *env, g *globals, fs *flag.FlagSet) error {
	id, err := oneArg(fs, "job id")
	if err != nil {
		return err
	}
	j, err := getJob(e, g, id)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(e.stdout, j)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("ID", j.ID)
	row("State", j.State)
	if j.ExitCode != nil {
		row("Exit code", strconv.Itoa(*j.ExitCode))
	}
	row("Reason", j.Reason)
	row("Source", j.Source)
	row("Command", strings.Join(j.Argv, " "))
	row("Labels", strings.Join(j.Labels, ","))
	row("Attempt", fmt.Sprintf("%d of %d (fence %d)", j.Attempt+1, j.MaxAttempts, j.Fence))
	row("Agent", j.AgentID)
	row("Created", j.CreatedAt.Format(time.RFC3339)+" by "+j.CreatedBy)
	if !j.StartedAt.IsZero() {
		row("Started", j.StartedAt.Format(time.RFC3339))
	}
	if !j.FinishedAt.IsZero() {
		row("Finished", j.FinishedAt.Format(time.RFC3339))
	}
	if gh := j.GitHub; gh != nil {
		row("Repository", gh.Repository)
		row("GitHub job", fmt.Sprintf("%d (run %d, attempt %d) %s", gh.JobID, gh.RunID, gh.RunAttempt, gh.Name))
		row("GitHub status", strings.TrimSpace(gh.Status+" "+gh.Conclusion))
		row("Runner", gh.RunnerName)
		row("Nimbus runner", gh.NimbusRunner)
	}
	if j.Egress != nil {
		printEgress(tw, j.Egress)
	}
	return tw.Flush()
}

func jobsCancel(e *env, g *globals, fs *flag.FlagSet) error {
	id, err := oneArg(fs, "job id")
	if err != nil {
		return err
	}
	c, err := g.client(e)
	if err != nil {
		return err
	}
	j, err := c.CancelJob(e.ctx, id)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(e.stdout, j)
	}
	if j.State == "cancelled" {
		fmt.Fprintf(e.stdout, "%s cancelled\n", j.ID)
	} else if j.CancelRequested {
		fmt.Fprintf(e.stdout, "%s is %s; its agent has been asked to stop it\n", j.ID, j.State)
	} else {
		fmt.Fprintf(e.stdout, "%s already %s\n", j.ID, j.State)
	}
	return nil
}

func agentsJoinToken(e *env, g *globals, fs *flag.FlagSet) error {
	var labels []string
	config.ListValue{List: &labels}.Set(flagString(fs, "labels"))
	if len(labels) == 0 {
		return usagef("--labels is required: the labels the agent may serve, e.g. --labels self-hosted,linux,x64,nimbus")
	}
	c, err := g.client(e)
	if err != nil {
		return err
	}
	req := apiv1.CreateJoinToken{Labels: labels, MaxJobs: int(flagInt(fs, "max-jobs")), ExpiresSeconds: int64(flagDuration(fs, "expires") / time.Second)}
	jt, err := c.CreateJoinToken(e.ctx, req)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(e.stdout, jt)
	}
	fmt.Fprintf(e.stdout, "%s\n", jt.Token)
	fmt.Fprintf(e.stderr, "Join token for one agent, labels %s, valid until %s. Start the agent with:\n  nimbus agent --server %s --join-token %s\n",
		strings.Join(jt.Labels, ","), jt.ExpiresAt.Local().Format(time.RFC3339), c.BaseURL, jt.Token)
	return nil
}

func agentsList(e *env, g *globals, fs *flag.FlagSet) error {
	c, err := g.client(e)
	if err != nil {
		return err
	}
	agents, err := c.ListAgents(e.ctx)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(e.stdout, apiv1.AgentList{Agents: agents})
	}
	var rows [][]string
	for _, a := range agents {
		rows = append(rows, []string{a.ID, a.Name, a.Status, strings.Join(a.Labels, ","), strconv.Itoa(a.MaxJobs), ago(a.LastSeenAt)})
	}
	table(e, "ID\tNAME\tSTATUS\tLABELS\tMAX JOBS\tLAST SEEN", rows)
	return nil
}

func agentsDisable(e *env, g *globals, fs *flag.FlagSet) error {
	id, err := oneArg(fs, "agent id")
	if err != nil {
		return err
	}
	c, err := g.client(e)
	if err != nil {
		return err
	}
	a, err := c.DisableAgent(e.ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s (%s) disabled\n", a.ID, a.Name)
	return nil
}

func tokensCreate(e *env, g *globals, fs *flag.FlagSet) error {
	name := flagString(fs, "name")
	if name == "" {
		return usagef("--name is required")
	}
	c, err := g.client(e)
	if err != nil {
		return err
	}
	req := apiv1.CreateToken{Name: name, Role: flagString(fs, "role"), ExpiresSeconds: int64(flagDuration(fs, "expires") / time.Second)}
	t, err := c.CreateToken(e.ctx, req)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(e.stdout, t)
	}
	fmt.Fprintln(e.stdout, t.Secret)
	fmt.Fprintf(e.stderr, "Token %s (%s, role %s); the secret above is shown only once.\n", t.ID, t.Name, t.Role)
	return nil
}

func tokensList(e *env, g *globals, fs *flag.FlagSet) error {
	c, err := g.client(e)
	if err != nil {
		return err
	}
	tokens, err := c.ListTokens(e.ctx)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(e.stdout, apiv1.TokenList{Tokens: tokens})
	}
	var rows [][]string
	for _, t := range tokens {
		state := "active"
		switch {
		case !t.RevokedAt.IsZero():
			state = "revoked"
		case !t.ExpiresAt.IsZero() && time.Now().After(t.ExpiresAt):
			state = "expired"
		}
		rows = append(rows, []string{t.ID, t.Name, t.Role, state, ago(t.CreatedAt)})
	}
	table(e, "ID\tNAME\tROLE\tSTATE\tCREATED", rows)
	return nil
}

func tokensRevoke(e *env, g *globals, fs *flag.FlagSet) error {
	id, err := oneArg(fs, "token id")
	if err != nil {
		return err
	}
	c, err := g.client(e)
	if err != nil {
		return err
	}
	t, err := c.RevokeToken(e.ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s (%s) revoked\n", t.ID, t.Name)
	return nil
}

func orgsList(e *env, g *globals, fs *flag.FlagSet) error {
	c, err := g.client(e)
	if err != nil {
		return err
	}
	orgs, err := c.ListOrgs(e.ctx)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(e.stdout, apiv1.OrgList{Orgs: orgs})
	}
	var rows [][]string
	for _, o := range orgs {
		gh := "-"
		if o.GitHubLogin != "" {
			gh = fmt.Sprintf("%s (%d)", o.GitHubLogin, o.GitHubID)
		}
		rows = append(rows, []string{o.ID, o.Name, gh, ago(o.CreatedAt)})
	}
	table(e, "ID\tNAME\tGITHUB\tCREATED", rows)
	return nil
}

func orgsCreate(e *env, g *globals, fs *flag.FlagSet) error {
	name, err := oneArg(fs, "org name")
	if err != nil {
		return err
	}
	c, err := g.client(e)
	if err != nil {
		return err
	}
	out, err := c.CreateOrg(e.ctx, apiv1.CreateOrg{Name: name, GitHubLogin: flagString(fs, "github-login"), GitHubID: flagInt(fs, "github-id")})
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(e.stdout, out)
	}
	fmt.Fprintln(e.stdout, out.AdminToken.Secret)
	fmt.Fprintf(e.stderr, "Org %s (%s) created; above is its admin token, shown only once.\n", out.Org.Name, out.Org.ID)
	return nil
}

func orgsLink(e *env, g *globals, fs *flag.FlagSet) error {
	id, err := oneArg(fs, "org id")
	if err != nil {
		return err
	}
	c, err := g.client(e)
	if err != nil {
		return err
	}
	o, err := c.LinkOrg(e.ctx, id, flagString(fs, "github-login"), flagInt(fs, "github-id"))
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s (%s) linked to GitHub account %s (%d)\n", o.Name, o.ID, o.GitHubLogin, o.GitHubID)
	return nil
}

func auditList(e *env, g *globals, fs *flag.FlagSet) error {
	c, err := g.client(e)
	if err != nil {
		return err
	}
	out, err := c.ListAudit(e.ctx, apiclient.AuditQuery{Limit: int(flagInt(fs, "limit"))})
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(e.stdout, out)
	}
	var rows [][]string
	for _, a := range out.Entries {
		var detail []string
		for k, v := range a.Detail {
			detail = append(detail, k+"="+v)
		}
		sort.Strings(detail)
		rows = append(rows, []string{a.At.Local().Format(time.DateTime), a.Actor, a.Action, a.Target, strings.Join(detail, " ")})
	}
	table(e, "TIME\tACTOR\tACTION\tTARGET\tDETAIL", rows)
	return nil
}

func keysList(e *env, g *globals, fs *flag.FlagSet) error {
	c, err := g.client(e)
	if err != nil {
		return err
	}
	keys, err := c.ListKeys(e.ctx)
	if err != nil {
		return err
	}
	return printKeys(e, g, keys)
}

func printKeys(e *env, g *globals, keys []apiv1.SigningKey) error {
	if g.json {
		return printJSON(e.stdout, keys)
	}
	var rows [][]string
	for _, k := range keys {
		state := "verifies until " + k.ExpiresAt.Local().Format(time.DateTime)
		switch {
		case k.Active:
			state = "active (signs)"
		case !k.RevokedAt.IsZero():
			state = "revoked"
		case time.Now().After(k.ExpiresAt):
			state = "expired"
		}
		rows = append(rows, []string{k.ID, state, ago(k.CreatedAt)})
	}
	table(e, "ID\tSTATE\tCREATED", rows)
	return nil
}

func keysRotate(e *env, g *globals, fs *flag.FlagSet) error {
	c, err := g.client(e)
	if err != nil {
		return err
	}
	keys, err := c.RotateKeys(e.ctx)
	if err != nil {
		return err
	}
	return printKeys(e, g, keys)
}

func webhookRotate(e *env, g *globals, fs *flag.FlagSet) error {
	c, err := g.client(e)
	if err != nil {
		return err
	}
	out, err := c.RotateWebhookSecret(e.ctx)
	if err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, out.Secret)
	fmt.Fprintf(e.stderr, "New webhook secret above (shown once); %d secrets are accepted until `nimbus ctl webhook-secrets retire`.\n", out.Count)
	return nil
}

func webhookRetire(e *env, g *globals, fs *flag.FlagSet) error {
	c, err := g.client(e)
	if err != nil {
		return err
	}
	out, err := c.RetireWebhookSecrets(e.ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%d webhook secret accepted\n", out.Count)
	return nil
}

func whoami(e *env, g *globals, fs *flag.FlagSet) error {
	c, err := g.client(e)
	if err != nil {
		return err
	}
	w, err := c.Whoami(e.ctx)
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(e.stdout, w)
	}
	fmt.Fprintf(e.stdout, "%s %s (%s) in org %s, role %s, server %s\n", w.Kind, w.ID, w.Name, w.Org, w.Role, c.BaseURL)
	return nil
}

func sessionsList(e *env, g *globals, fs *flag.FlagSet) error {
	c, err := g.client(e)
	if err != nil {
		return err
	}
	sessions, err := c.ListSessions(e.ctx, flagString(fs, "all") == "true")
	if err != nil {
		return err
	}
	if g.json {
		return printJSON(e.stdout, apiv1.SessionList{Sessions: sessions})
	}
	var rows [][]string
	for _, s := range sessions {
		rows = append(rows, []string{s.ID, s.User, s.State, s.Workspace, s.AgentID, ago(s.LastUsedAt)})
	}
	table(e, "ID\tUSER\tSTATE\tWORKSPACE\tAGENT\tLAST USED", rows)
	return nil
}

func sessionsStop(e *env, g *globals, fs *flag.FlagSet) error {
	id, err := oneArg(fs, "session id")
	if err != nil {
		return err
	}
	c, err := g.client(e)
	if err != nil {
		return err
	}
	s, err := c.StopSession(e.ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s %s\n", s.ID, s.State)
	return nil
}

func refList(s string) []string {
	out := []string{}
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func cacheTrust(e *env, g *globals, fs *flag.FlagSet) error {
	c, err := g.client(e)
	if err != nil {
		return err
	}
	t, err := c.CacheTrust(e.ctx)
	if err != nil {
		return err
	}
	untrusted, acWrite := flagString(fs, "untrusted-refs"), flagString(fs, "ac-write-refs")
	if untrusted != "-" || acWrite != "-" {
		if untrusted != "-" {
			t.UntrustedRefs = refList(untrusted)
		}
		if acWrite != "-" {
			t.ACWriteRefs = refList(acWrite)
		}
		if t, err = c.SetCacheTrust(e.ctx, apiv1.CacheTrust{UntrustedRefs: t.UntrustedRefs, ACWriteRefs: t.ACWriteRefs}); err != nil {
			return err
		}
	}
	if g.json {
		return printJSON(e.stdout, t)
	}
	none := func(l []string) string {
		if len(l) == 0 {
			return "(none)"
		}
		return strings.Join(l, ", ")
	}
	fmt.Fprintf(e.stdout, "Untrusted refs (read-only cache):   %s\n", none(t.UntrustedRefs))
	fmt.Fprintf(e.stdout, "Refs that write the action cache:   %s\n", none(t.ACWriteRefs))
	fmt.Fprintln(e.stdout, "Pull requests from forks are always read-only.")
	return nil
}

# Nimbus authorization policy. Deny by default: a request is allowed only
# when a rule below says so. Every decision the control plane makes about a
# caller goes through this file; internal/policy/testdata/fixtures.json
# holds the golden allow/deny decisions `make test` checks on every change.
package nimbus.authz

import rego.v1

default allow := false

# Roles of API tokens, weakest first.
role_rank := {
	"viewer": 1,
	"developer": 2,
	"ci": 3,
	"admin": 4,
	"owner": 5,
}

# The weakest role that may perform each action a person or CI system can
# ask for. An action missing here is denied to every token.
min_role := {
	"jobs.read": "viewer",
	"logs.read": "viewer",
	"agents.read": "viewer",
	"sessions.read": "viewer",
	"cache.read": "viewer",
	"registry.read": "viewer",
	"jobs.create": "developer",
	"jobs.cancel": "developer",
	"sessions.use": "developer",
	"cache.write": "ci",
	"registry.write": "ci",
	"cache.write_ac": "ci",
	"cache.trust.read": "viewer",
	"cache.trust.write": "admin",
	"sessions.stop": "admin",
	"agents.create_join_token": "admin",
	"agents.disable": "admin",
	"tokens.read": "admin",
	"tokens.create": "admin",
	"tokens.revoke": "admin",
	"audit.read": "admin",
	"orgs.read": "owner",
	"orgs.create": "owner",
	"keys.read": "owner",
	"keys.rotate": "owner",
	# The dashboard (internal/dashboard): signing in and moving around,
	# the insights page, an org's cache usage against its quota.
	"dashboard.use": "viewer",
	"insights.read": "viewer",
	"cache.usage.read": "viewer",
}

# What an enrolled agent may do, in its own org only.
agent_actions := {
	"agent.register",
	"agent.lease",
	"agent.sync",
	"agent.report",
	"agent.refresh",
	"agent.sessions",
}

# What a job credential may do when its scopes say so. The control plane
# mints a job's scopes from what its submitter may do and how far its
# source is trusted (internal/cache/jobcred).
# registry.read pulls images through the registry cache; registry.write
# pushes to the org's own repositories.
job_actions := {"cache.read", "cache.write", "cache.write_ac", "registry.read", "registry.write"}

same_org if {
	input.subject.org != ""
	input.subject.org == input.resource.org
}

allow if {
	input.subject.kind == "user"
	same_org
	role_rank[input.subject.role] >= role_rank[min_role[input.action]]
	not escalates
}

allow if {
	input.subject.kind == "agent"
	same_org
	input.action in agent_actions
}

allow if {
	input.subject.kind == "job"
	same_org
	input.action in job_actions
	input.action in input.subject.scopes
}

# Actions on a principal that has a role are allowed only on roles at or
# below the caller's: a token may create and revoke tokens of its own role
# or weaker, and disable only agents enrolled by a join token of such a
# role (an agent takes the role of whoever created its join token).
# resource.role is the target's role: the token created or revoked, the
# agent disabled. It is empty at the edge, before the request names its
# target, where only the action's minimum role applies; the service asks
# again with the target's role.
role_actions := {"tokens.create", "tokens.revoke", "agents.disable"}

escalates if {
	input.action in role_actions
	input.resource.role != ""
	not role_rank[input.resource.role]
}

escalates if {
	input.action in role_actions
	role_rank[input.resource.role] > role_rank[input.subject.role]
}

package policy

import (
	"context"

	"github.com/open-policy-agent/opa/v1/rego"
)

func compileQuery(ctx context.Context, query string) (rego.PreparedEvalQuery, error) {
	return rego.New(rego.Query(query), rego.Module("authz.rego", authzRego)).PrepareForEval(ctx)
}

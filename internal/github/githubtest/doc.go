// Package githubtest is a small working emulator of the parts of GitHub's
// REST API that Nimbus uses, plus helpers to build, sign and deliver
// webhooks, for tests.
//
// Server serves, on 127.0.0.1 with a random port:
//
//	POST   /app/installations/{id}/access_tokens            (App JWT)
//	POST   /orgs/{org}/actions/runners/generate-jitconfig    (installation token)
//	POST   /repos/{owner}/{repo}/actions/runners/generate-jitconfig
//	DELETE /orgs/{org}/actions/runners/{runner_id}
//	DELETE /repos/{owner}/{repo}/actions/runners/{runner_id}
//	GET    /login/oauth/authorize, POST /login/oauth/access_token  (an App's OAuth client, PKCE)
//	GET    /user, /user/emails, /user/memberships/orgs/{org}       (user token)
//
// It verifies App JWTs as GitHub does (RS256 with the App's registered public
// key, iat, exp, iss), issues random installation tokens with a configurable
// lifetime, checks that an installation covers the org or repository it acts
// on, validates request bodies like GitHub and records every runner. Anything
// else, registration tokens included, is a 404 in GitHub's JSON shape. Faults
// (5xx, rate limits) can be injected per route.
//
// The emulator shares no code with package github, so that a bug in the
// client is not mirrored by the server it is tested against.
package githubtest

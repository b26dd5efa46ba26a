// Package outputs brings a remote command's top-level outputs back to the
// developer's machine, so bazel-bin/... works locally as it would after a
// local build.
//
// The agent adds --build_event_json_file to build, test, run and coverage
// commands and, when the command finishes, reads the file's top-level
// output files and test logs (ParseBEP). The proxy then asks the agent to
// describe those paths (Lister: directories recursively, runfiles symlinks
// followed into the output base), downloads only files whose content it
// does not already have, and recreates the bazel-* convenience symlinks
// (Fetcher). Everything the agent reads goes through an os.Root of the
// session's storage; everything the proxy writes goes through an os.Root of
// the local output base and only under execroot/ and external/.
package outputs

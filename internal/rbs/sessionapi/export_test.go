package sessionapi

// For the tests of the API against the real broker (package sessionapi_test).
type GetServerRequest = getServerRequest

const PathSessions = pathSessions

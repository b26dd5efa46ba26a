//go:build race

package api_test

// raceEnabled: the race detector's shadow memory, which it does not hand
// back, makes up much of the resident set.
const raceEnabled = true

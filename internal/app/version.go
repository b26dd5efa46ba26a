package app

// Version is the build's version, set with -ldflags "-X …app.Version=…".
var Version = "0.1.0-dev"

// Command testinit is `nimbus container-init` alone, which the Docker
// executor's tests build statically (the whole nimbus binary takes much
// longer to build).
package main

import (
	"os"

	"github.com/nimbus-build/nimbus/internal/executor/execinit"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "container-init" {
		os.Exit(execinit.Main(os.Args[2:], os.Stdin, os.Stderr))
	}
	os.Exit(2)
}

// Command etcd is the etcd server (go.etcd.io/etcd/server/v3, the version that k8s.io/kubernetes
// pins), built here because the etcd server module has replace directives and cannot be
// `go install`ed by version. Same entry point as upstream's etcd main.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}

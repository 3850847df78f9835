// Command sandstone-lambda is the bootstrap of Sandstone's AWS Lambda
// functions (runtime provided.al2023). SANDSTONE_STAGE chooses the stage:
// ingest (invoked by EventBridge Scheduler), transform (by S3 notifications
// of ingestion manifests), load (by S3 notifications of processed
// manifests) or audit (by its own, daily schedule). Build it with:
//
//	GOOS=linux GOARCH=arm64 CGO_ENABLED=0 go build -tags lambda.norpc -o bootstrap ./cmd/sandstone-lambda
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/ops/lambdafn"
)

func main() {
	h, err := lambdafn.FromEnv(context.Background(), os.Stdout)
	if err != nil {
		fmt.Fprintf(os.Stdout, "{\"level\":\"ERROR\",\"msg\":\"sandstone-lambda cannot start\",\"error_kind\":\"config_invalid\",\"error\":%q}\n", config.Redact(err.Error()))
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}

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
	"encoding/json"
	"io"
	"os"

	"github.com/aws/aws-lambda-go/lambda"

	"github.com/sandstone-data/sandstone/internal/base/config"
	"github.com/sandstone-data/sandstone/internal/base/errkind"
	"github.com/sandstone-data/sandstone/internal/ops/lambdafn"
)

func main() {
	h, err := lambdafn.FromEnv(context.Background(), os.Stdout)
	if err != nil {
		cannotStart(os.Stdout, err)
		os.Exit(1)
	}
	lambda.Start(h.Handle)
}

// cannotStart writes the one ERROR line of a function that cannot start
// (its configuration is invalid), as JSON the error metric filter reads:
// the JSON encoder escapes what a Go %q would write in ways JSON has not
// (\x01, \v), which would keep the filter from matching.
func cannotStart(w io.Writer, err error) {
	_ = json.NewEncoder(w).Encode(struct {
		Level     string       `json:"level"`
		Msg       string       `json:"msg"`
		ErrorKind errkind.Kind `json:"error_kind"`
		Error     string       `json:"error"`
	}{"ERROR", "sandstone-lambda cannot start", errkind.ConfigInvalid, config.Redact(err.Error())})
}

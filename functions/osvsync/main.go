// Command osvsync is the OSV data sync function, run by an EventBridge
// Scheduler schedule (every 6 hours by default). It copies OSV's
// per-ecosystem exports into the bucket at osv/<Ecosystem>/all.zip when
// they changed (pkg/osvsync) and then asks the scan function to re-match
// the scanned images (functions/internal/osvsyncwire, docs/deploy.md
// "Deploying scanning").
package main

import (
	"context"
	"log/slog"
	"os"
	"strings"

	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/config"

	"github.com/berth-registry/berth/functions/internal/lambdaenv"
	"github.com/berth-registry/berth/functions/internal/osvsyncwire"
)

func loadSettings(getenv func(string) string) (osvsyncwire.Settings, error) {
	env := lambdaenv.New(getenv)
	s := osvsyncwire.Settings{
		Bucket:       env.Required(lambdaenv.Bucket),
		Level:        env.Level(lambdaenv.LogLevel),
		BaseURL:      env.String(lambdaenv.OSVBaseURL, ""),
		ScanFunction: env.String(lambdaenv.ScanFunction, ""),
	}
	if v := env.String(lambdaenv.OSVEcosystems, ""); v != "" {
		for e := range strings.SplitSeq(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				s.Ecosystems = append(s.Ecosystems, e)
			}
		}
	}
	return s, env.Err()
}

func main() {
	s, err := loadSettings(os.Getenv)
	log := lambdaenv.Logger(os.Stderr, s.Level)
	if err != nil {
		log.Error("configuration", slog.Any("error", err))
		os.Exit(1)
	}
	awsCfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		log.Error("aws configuration", slog.Any("error", err))
		os.Exit(1)
	}
	lambda.Start(osvsyncwire.Handler(awsCfg, s, log))
}

package dynamo_test

import (
	"testing"

	"github.com/berth-registry/berth/internal/testenv"
	"github.com/berth-registry/berth/pkg/driver/dynamo"
	"github.com/berth-registry/berth/pkg/storage"
	"github.com/berth-registry/berth/pkg/storage/storagetest"
)

func TestItems(t *testing.T) {
	client := testenv.DynamoDB(t)
	storagetest.TestItems(t, func(t *testing.T) storage.Items {
		return dynamo.New(client, testenv.FreshTable(t, client))
	})
}

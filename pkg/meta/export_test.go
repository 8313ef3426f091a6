package meta

import "github.com/berth-registry/berth/pkg/storage"

// ItemsOf gives the tests the driver under a Store, to look at the records
// the logic wrote. Production code has no use for it: background jobs take
// the driver they were built with.
func ItemsOf(s *Store) storage.Items { return s.items }

// Redpanda Connect with only what the peer comparison needs: the Kafka input,
// the pure processors and the SQL output with PostgreSQL drivers. Built by
// load/peer/build (pinned version, cached under .state/); not part of CI.
package main

import (
	"context"

	_ "github.com/jackc/pgx/v5/stdlib"
	_ "github.com/lib/pq"
	_ "github.com/redpanda-data/benthos/v4/public/components/pure"
	"github.com/redpanda-data/benthos/v4/public/service"
	_ "github.com/redpanda-data/connect/v4/public/components/kafka"
	_ "github.com/redpanda-data/connect/v4/public/components/sql/base"
)

func main() {
	service.RunCLI(context.Background())
}

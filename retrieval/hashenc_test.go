package retrieval

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/seer-ml/seer/features"
	"github.com/seer-ml/seer/internal/redistest"
)

func TestHashEncoding(t *testing.T) {
	var y strings.Builder
	y.WriteString("entities: {store: {key: \"st_{id}\"}, consumer: {key: \"cx_{id}\"}, item: {key: \"it_{id}\"}}\nfeatures:\n")
	for i := range 20 {
		fmt.Fprintf(&y, "  - {name: s%d, entity: store, type: float, store: main}\n", i)
	}
	for i := range 10 {
		fmt.Fprintf(&y, "  - {name: c%d, entity: consumer, type: float, store: main}\n", i)
	}
	y.WriteString("  - {name: i0, entity: item, type: float, store: other}\n")
	c, err := features.ParseCatalog([]byte(y.String()), nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	srv := redistest.Start(t, "--hash-max-listpack-entries", "64")
	st, err := Open(ctx, "main", Config{Addr: srv.Addr})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	want := HashEncoding{Limit: 64, Wide: []WideEntity{{Entity: "store", Features: 20, Fields: 80}}}
	if got := st.HashEncoding(ctx, c); !cmp.Equal(want, got) {
		t.Errorf("standalone (-want +got):\n%s", cmp.Diff(want, got))
	}

	// A cluster reports the smallest limit of its masters.
	cl := redistest.StartCluster(t, 3)
	if err := cl.Servers[1].Client().ConfigSet(ctx, "hash-max-listpack-entries", "16").Err(); err != nil {
		t.Fatal(err)
	}
	cst, err := Open(ctx, "main", Config{Mode: ModeCluster, Addrs: cl.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	defer cst.Close()
	want = HashEncoding{Limit: 16, Wide: []WideEntity{{Entity: "store", Features: 20, Fields: 80}, {Entity: "consumer", Features: 10, Fields: 40}}}
	if got := cst.HashEncoding(ctx, c); !cmp.Equal(want, got) {
		t.Errorf("cluster (-want +got):\n%s", cmp.Diff(want, got))
	}

	// A user who may not run CONFIG: the limit is unknown, and says why.
	if err := srv.Client().Do(ctx, "ACL", "SETUSER", "reader", "on", ">secret", "~*", "+@all", "-config").Err(); err != nil {
		t.Fatal(err)
	}
	t.Setenv("SEER_TEST_REDIS_PASSWORD", "secret")
	limited, err := Open(ctx, "main", Config{Addr: srv.Addr, Username: "reader", PasswordEnv: "SEER_TEST_REDIS_PASSWORD"})
	if err != nil {
		t.Fatal(err)
	}
	defer limited.Close()
	if got := limited.HashEncoding(ctx, c); got.Limit != -1 || !strings.Contains(got.Error, "NOPERM") || got.Wide != nil {
		t.Errorf("without CONFIG: %+v", got)
	}
}

package limitgrpc_test

import (
	"log"
	"net"

	"github.com/gatehouse/gatehouse/limiter"
	"github.com/gatehouse/gatehouse/limiter/limitgrpc"
	"github.com/redis/go-redis/v9"
	"google.golang.org/grpc"
)

func Example() {
	rdb := redis.NewClient(&redis.Options{Addr: "localhost:6379"})
	lim, err := limiter.New(rdb, limiter.TokenBucket, limiter.WithFailurePolicy(limiter.FailLocal(limiter.LocalFallback{})))
	if err != nil {
		log.Fatal(err)
	}
	// 50 calls per second per client address, in bursts of 100; refusals are ResourceExhausted
	// with a RetryInfo detail.
	limits := []limiter.Limit{limiter.PerSecond(50).WithBurst(100).WithName("rpc")}
	srv := grpc.NewServer(
		grpc.UnaryInterceptor(limitgrpc.UnaryServerInterceptor(lim, limitgrpc.ByPeerIP, limits)),
		grpc.StreamInterceptor(limitgrpc.StreamServerInterceptor(lim, limitgrpc.ByPeerIP, limits)),
	)
	// ... register services ...
	ln, err := net.Listen("tcp", ":9090")
	if err != nil {
		log.Fatal(err)
	}
	log.Fatal(srv.Serve(ln))
}

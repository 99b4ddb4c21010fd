// An experiment, not part of the product: sets TCP_NODELAY on every TCP
// socket a process connects, to measure what Nagle's algorithm costs a client
// that does not turn it off (neo4rs; load/RESULTS.md, "Nagle on the Neo4j
// connection"). Every client of the process is affected, so compare it with
// the same run without it, and read the Neo4j figures only.
//
//   gcc -shared -fPIC -O2 -o /tmp/nodelay.so load/profile/nodelay.c -ldl
//   LD_PRELOAD=/tmp/nodelay.so ./target/release/examples/e2e ...
#define _GNU_SOURCE
#include <dlfcn.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
int connect(int fd, const struct sockaddr *addr, socklen_t len) {
    static int (*real)(int, const struct sockaddr *, socklen_t);
    if (!real) real = dlsym(RTLD_NEXT, "connect");
    if (addr && (addr->sa_family == AF_INET || addr->sa_family == AF_INET6)) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    return real(fd, addr, len);
}

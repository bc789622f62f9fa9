#!/usr/bin/env bash
# A ZooKeeper (Debian's `zookeeper` package) on 127.0.0.1 serving TLS only, as nodepool 11
# requires, with certificates made here by openssl: a CA, the server's (for 127.0.0.1) and a
# client's, the files nodepool.yaml's `zookeeper-tls` names.
#
# Usage: zookeeper.sh start|stop
#   ZKDIR     state directory (zoo.cfg, data, tls/, log, pid); required
#   ZK_PORT   the TLS client port (default 22281)
#   WATCH_PID if set, ZooKeeper is stopped once this process is gone (test binaries have no
#             teardown hook; a crashed test must not leave a server behind)
#
# Debian's ZooKeeper 3.8 serves TLS through Netty, whose codec, resolver and native-unix-common
# jars (libnetty-java) its jar's manifest does not list: they are put on the classpath here.
set -euo pipefail
: "${ZKDIR:?set ZKDIR to a state directory}"
ZK_PORT=${ZK_PORT:-22281}
JARS=/usr/share/java

fail() {
    echo "zookeeper.sh: $*" >&2
    exit 1
}

make_certs() {
    local tls=$ZKDIR/tls who
    mkdir -p "$tls"
    (
        cd "$tls"
        openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj '/CN=mesos-image nodepool test CA' \
            -keyout ca.key -out ca.pem 2>/dev/null
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\n' > ext.cnf
        for who in server client; do
            openssl req -newkey rsa:2048 -nodes -subj "/CN=$who" -keyout "$who.key" -out "$who.csr" 2>/dev/null
            openssl x509 -req -in "$who.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 \
                -extfile ext.cnf -out "$who.pem" 2>/dev/null
        done
        # ZooKeeper's PEM key store is one file holding the key and its certificate.
        cat server.key server.pem > server-keystore.pem
    )
}

classpath() {
    local jar cp=/etc/zookeeper/conf
    for jar in zookeeper netty-codec netty-resolver netty-transport-native-unix-common slf4j-simple; do
        [ -f "$JARS/$jar.jar" ] || fail "$JARS/$jar.jar is missing (install zookeeper and libnetty-java: scripts/install-deps.sh)"
        cp=$cp:$JARS/$jar.jar
    done
    echo "$cp"
}

write_config() {
    mkdir -p "$ZKDIR/data"
    cat > "$ZKDIR/zoo.cfg" <<CFG
dataDir=$ZKDIR/data
tickTime=2000
secureClientPortAddress=127.0.0.1
secureClientPort=$ZK_PORT
serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory
ssl.keyStore.location=$ZKDIR/tls/server-keystore.pem
ssl.keyStore.type=PEM
ssl.trustStore.location=$ZKDIR/tls/ca.pem
ssl.trustStore.type=PEM
ssl.clientAuth=need
authProvider.x509=org.apache.zookeeper.server.auth.X509AuthenticationProvider
admin.enableServer=false
4lw.commands.whitelist=ruok
CFG
}

# TLS answers on the port: a handshake with the client certificate succeeds.
wait_tls() {
    local tls=$ZKDIR/tls
    for _ in $(seq 1 300); do
        if openssl s_client -connect "127.0.0.1:$ZK_PORT" -CAfile "$tls/ca.pem" -cert "$tls/client.pem" \
            -key "$tls/client.key" -verify_return_error </dev/null >/dev/null 2>&1; then
            return 0
        fi
        kill -0 "$(cat "$ZKDIR/zookeeper.pid")" 2>/dev/null || fail "ZooKeeper exited: $(tail -n 5 "$ZKDIR/zookeeper.log")"
        sleep 0.2
    done
    fail "timeout waiting for ZooKeeper's TLS port $ZK_PORT (log: $ZKDIR/zookeeper.log)"
}

stop() {
    if [ -f "$ZKDIR/zookeeper.pid" ]; then
        kill "$(cat "$ZKDIR/zookeeper.pid")" 2>/dev/null || true
        rm -f "$ZKDIR/zookeeper.pid"
    fi
}

# Stop ZooKeeper once $WATCH_PID is gone: by its pid, taken now, so a caller that removed ZKDIR
# (pid file and all) before exiting still leaves no server behind.
start_watcher() {
    setsid bash -c 'while kill -0 "$1" 2>/dev/null; do sleep 1; done; kill "$2" 2>/dev/null' \
        watcher "$WATCH_PID" "$(cat "$ZKDIR/zookeeper.pid")" </dev/null >/dev/null 2>&1 &
}

start() {
    command -v java >/dev/null || fail "no java (install zookeeper: scripts/install-deps.sh)"
    [ -z "$(ss -Hltn "sport = :$ZK_PORT")" ] || fail "port $ZK_PORT is in use"
    local cp
    cp=$(classpath)
    mkdir -p "$ZKDIR"
    make_certs
    write_config
    nohup java -cp "$cp" -Xmx256m -Dzookeeper.log.dir="$ZKDIR" \
        org.apache.zookeeper.server.ZooKeeperServerMain "$ZKDIR/zoo.cfg" >"$ZKDIR/zookeeper.log" 2>&1 &
    echo $! > "$ZKDIR/zookeeper.pid"
    if [ -n "${WATCH_PID:-}" ]; then start_watcher; fi
    wait_tls
    echo "zookeeper 127.0.0.1:$ZK_PORT (TLS)  certificates: $ZKDIR/tls"
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

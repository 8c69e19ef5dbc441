"""What the cluster benchmarks share: a throwaway ZooKeeper (Debian's, on a free port of
127.0.0.1, its data in a temp dir) and ZooKeeper's four-letter words."""
import os, socket, subprocess, sys, time

JARS = "/usr/share/java/zookeeper.jar:/usr/share/java/slf4j-simple.jar"


def free_port(ip="127.0.0.1"):
    s = socket.socket()
    s.bind((ip, 0))
    p = s.getsockname()[1]
    s.close()
    return p


def four(port, word):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(word.encode())
            out = b""
            while True:
                b = s.recv(65536)
                if not b:
                    return out.decode()
                out += b
    except OSError:
        return ""



class Zk:
    def __init__(self, root, extra="", heap="256m"):
        """`extra`: more zoo.cfg lines (e.g. "maxSessionTimeout=60000\n"); `heap`: the JVM's -Xmx
        (thousands of sessions want more than the default 256m)."""
        self.port = free_port()
        data = os.path.join(root, "zk")
        os.makedirs(data)
        cfg = os.path.join(data, "zoo.cfg")
        with open(cfg, "w") as f:
            f.write(f"tickTime=200\ndataDir={data}\nclientPort={self.port}\nclientPortAddress=127.0.0.1\n"
                    "admin.enableServer=false\n4lw.commands.whitelist=*\nmaxClientCnxns=0\n" + extra)
        self.proc = subprocess.Popen(["java", f"-Xmx{heap}", "-XX:+UseSerialGC", "-cp", JARS,
                                      "org.apache.zookeeper.server.quorum.QuorumPeerMain", cfg],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        # `ruok` says imok as soon as the port listens, before the server has loaded its data and
        # serves: clients connecting then are dropped ("ZooKeeperServer not running") and back
        # off. `srvr` answers its version only once it serves.
        while "Zookeeper version" not in four(self.port, "srvr"):
            if time.time() > deadline:
                sys.exit("ZooKeeper did not start")
            time.sleep(0.1)

    def stop(self):
        self.proc.kill()
        self.proc.wait()

// Starts Neo4j Community embedded with its Bolt connector on 127.0.0.1:<port>,
// and stays up until killed. Two shapes:
//   plain    authentication off, no TLS (the local test server)
//   secured  Bolt over TLS only (the certificate and key in <tls dir>, client
//            certificates from its CA accepted), authentication on, the user
//            neo4j's password from <password file>
// Usage: java -cp <neo4j jars> Neo4jServer <home dir> <bolt port> [<tls dir> <password file>]
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

import org.neo4j.configuration.GraphDatabaseSettings;
import org.neo4j.configuration.connectors.BoltConnector;
import org.neo4j.configuration.helpers.SocketAddress;
import org.neo4j.configuration.ssl.ClientAuth;
import org.neo4j.configuration.ssl.SslPolicyConfig;
import org.neo4j.configuration.ssl.SslPolicyScope;
import org.neo4j.dbms.api.DatabaseManagementService;
import org.neo4j.dbms.api.DatabaseManagementServiceBuilder;
import org.neo4j.graphdb.GraphDatabaseService;

public final class Neo4jServer {
    public static void main(String[] args) {
        try {
            serve(args);
        } catch (Throwable e) {
            // Neo4j's own threads would keep a failed start alive, neither ready nor gone.
            e.printStackTrace();
            System.exit(1);
        }
    }

    private static void serve(String[] args) throws Exception {
        Path home = Path.of(args[0]).toAbsolutePath();
        int port = Integer.parseInt(args[1]);
        boolean secured = args.length == 4;
        DatabaseManagementServiceBuilder builder = new DatabaseManagementServiceBuilder(home)
                .setConfig(BoltConnector.enabled, true)
                .setConfig(BoltConnector.listen_address, new SocketAddress("127.0.0.1", port))
                .setConfig(GraphDatabaseSettings.auth_enabled, secured)
                .setConfig(GraphDatabaseSettings.pagecache_memory, 128L * 1024 * 1024);
        if (secured) {
            Path tls = Path.of(args[2]).toAbsolutePath();
            // The policy's directory: the key pair, the CA trusted for client certificates, no revocations.
            Path policy = home.resolve("bolt-tls");
            Files.createDirectories(policy.resolve("trusted"));
            Files.createDirectories(policy.resolve("revoked"));
            Files.copy(tls.resolve("ca.crt"), policy.resolve("trusted/ca.crt"), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            SslPolicyConfig bolt = SslPolicyConfig.forScope(SslPolicyScope.BOLT);
            builder.setConfig(bolt.enabled, true)
                    .setConfig(bolt.base_directory, policy)
                    .setConfig(bolt.private_key, tls.resolve("server.key"))
                    .setConfig(bolt.public_certificate, tls.resolve("server.crt"))
                    .setConfig(bolt.trusted_dir, policy.resolve("trusted"))
                    .setConfig(bolt.revoked_dir, policy.resolve("revoked"))
                    .setConfig(bolt.client_auth, ClientAuth.OPTIONAL)
                    .setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.REQUIRED);
        } else {
            builder.setConfig(BoltConnector.encryption_level, BoltConnector.EncryptionLevel.DISABLED);
        }
        DatabaseManagementService dbms = builder.build();
        Runtime.getRuntime().addShutdownHook(new Thread(dbms::shutdown));
        if (secured) {
            // The password file may be new since the last start: set it each time.
            String password = Files.readString(Path.of(args[3])).strip();
            try {
                dbms.database(GraphDatabaseSettings.SYSTEM_DATABASE_NAME).executeTransactionally(
                        "ALTER USER neo4j SET PASSWORD $password CHANGE NOT REQUIRED", Map.of("password", password));
            } catch (org.neo4j.graphdb.QueryExecutionException e) {
                // A restart with the same password file: already set.
                if (!e.getMessage().contains("cannot be the same")) throw e;
            }
        }
        GraphDatabaseService db = dbms.database(GraphDatabaseSettings.DEFAULT_DATABASE_NAME);
        while (!db.isAvailable(1000)) {
            System.out.println("waiting for database " + db.databaseName());
        }
        System.out.println("neo4j ready on " + (secured ? "bolt+s" : "bolt") + "://127.0.0.1:" + port);
        Thread.currentThread().join();
    }
}

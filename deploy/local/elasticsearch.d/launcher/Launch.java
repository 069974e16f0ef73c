// The piece of Elasticsearch's server CLI (org.elasticsearch.server.cli, not on Maven Central) that
// deploy/local/elasticsearch needs: the 8.x server reads its arguments (ServerArgs) from stdin and
// shuts down when the CLI writes its shutdown marker there (or stdin closes). This builds those
// arguments (an empty keystore, the settings read from elasticsearch.yml, config and logs
// folders), hands them over on an in-process stdin whose next byte is the shutdown marker, sent
// on SIGTERM/SIGINT, and runs org.elasticsearch.bootstrap.Elasticsearch in the same JVM.
//   java -cp "<home>/lib/*:<launcher>" Launch CONFIG_DIR LOGS_DIR
import java.io.ByteArrayInputStream;
import java.io.ByteArrayOutputStream;
import java.io.InputStream;
import java.io.SequenceInputStream;
import java.lang.reflect.Method;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.CountDownLatch;
import org.elasticsearch.bootstrap.ServerArgs;
import org.elasticsearch.common.io.stream.OutputStreamStreamOutput;
import org.elasticsearch.common.settings.KeyStoreWrapper;
import org.elasticsearch.common.settings.Settings;
import sun.misc.Signal;

public final class Launch {
  /** BootstrapInfo.SERVER_SHUTDOWN_MARKER: the server stops cleanly and exits 0 on reading it. */
  static final int SHUTDOWN_MARKER = 0x1b;

  /** stdin after the arguments: blocks until a signal asks for shutdown, then sends the marker. */
  static final class UntilSignalled extends InputStream {
    final CountDownLatch signalled = new CountDownLatch(1);

    @Override
    public int read() {
      try {
        signalled.await();
      } catch (InterruptedException e) {
        Thread.currentThread().interrupt();
      }
      return SHUTDOWN_MARKER;
    }
  }

  public static void main(String[] argv) throws Exception {
    Path config = Path.of(argv[0]).toAbsolutePath();
    Path logs = Path.of(argv[1]).toAbsolutePath();
    // The server CLI reads elasticsearch.yml and hands the server the settings it read; the
    // server's YAML parser needs logging set up first, so this reads the flat "key: value" lines
    // deploy/local/elasticsearch writes.
    Settings.Builder settings = Settings.builder().put("path.home", System.getProperty("es.path.home"));
    for (String line : Files.readAllLines(config.resolve("elasticsearch.yml"))) {
      int colon = line.indexOf(": ");
      if (!line.startsWith("#") && colon > 0) {
        settings.put(line.substring(0, colon).trim(), line.substring(colon + 2).trim());
      }
    }
    KeyStoreWrapper keystore = KeyStoreWrapper.create();
    ServerArgs args = new ServerArgs(false, true, null, keystore, settings.build(), config, logs);
    ByteArrayOutputStream bytes = new ByteArrayOutputStream();
    try (OutputStreamStreamOutput out = new OutputStreamStreamOutput(bytes)) {
      args.writeTo(out);
    }
    UntilSignalled rest = new UntilSignalled();
    // The JVM's own SIGTERM handling runs shutdown hooks that wait for the server forever.
    Signal.handle(new Signal("TERM"), signal -> rest.signalled.countDown());
    Signal.handle(new Signal("INT"), signal -> rest.signalled.countDown());
    System.setIn(new SequenceInputStream(new ByteArrayInputStream(bytes.toByteArray()), rest));
    // the bootstrap class is package-private: its public main is reached by reflection
    Method main = Class.forName("org.elasticsearch.bootstrap.Elasticsearch").getMethod("main", String[].class);
    main.setAccessible(true);
    main.invoke(null, (Object) new String[0]);
  }
}

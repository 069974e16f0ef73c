// The server looks for this class in lib/tools/ansi-console (the distribution's ANSI console,
// which Maven Central does not publish) and uses the console it supplies for start-up messages.
// The local node has no terminal: no console (null), so everything goes to the log.
package org.elasticsearch.io.ansi;

import java.util.function.Supplier;

public final class AnsiConsoleLoader implements Supplier<Object> {
  @Override
  public Object get() {
    return null;
  }
}

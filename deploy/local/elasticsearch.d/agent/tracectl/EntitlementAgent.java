package tracectl;

import java.lang.instrument.Instrumentation;

/**
 * Elasticsearch 9's entitlement agent, which no registry publishes: the server attaches the jar
 * named by -Des.entitlement.agentJar to itself and this hands it the JVM's Instrumentation, the
 * one thing the agent of a distribution does (the checks themselves live in the published
 * elasticsearch-entitlement jar, which exports the initialisation package to us at start-up).
 */
public final class EntitlementAgent {
    private EntitlementAgent() {}

    public static void agentmain(String args, Instrumentation inst) throws Exception {
        Class.forName("org.elasticsearch.entitlement.initialization.EntitlementInitialization")
            .getMethod("initialize", Instrumentation.class)
            .invoke(null, inst);
    }
}

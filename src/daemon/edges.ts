// What turns the daemon into a service an operator can watch: the HTTP listener (/metrics, /healthz) with its
// background health checks, and the ban notifications. Each is optional (http.port 0, notify.webhook.url empty).
import type { AppConfig } from '../config/schema.js';
import { HealthMonitor, type HealthMonitorOptions } from '../http/health.js';
import { startHttpServer, type HttpServer } from '../http/server.js';
import { WebhookNotifier } from '../notify/webhook.js';

/** what the health checks read, plus the settings of the listener and the webhook */
export interface ServiceEdgesOptions extends Pick<
  HealthMonitorOptions,
  'store' | 'firewall' | 'amiConnected' | 'fallback' | 'metrics' | 'logger'
> {
  readonly cfg: Pick<AppConfig, 'http' | 'notify' | 'node'>;
}

export class ServiceEdges {
  /** undefined when no webhook is configured */
  readonly notifier: WebhookNotifier | undefined;
  private readonly health: HealthMonitor;
  private http: HttpServer | undefined;

  constructor(private readonly o: ServiceEdgesOptions) {
    const webhook = o.cfg.notify.webhook;
    this.notifier = webhook.url
      ? new WebhookNotifier({
          url: webhook.url,
          timeoutMs: webhook.timeout,
          retries: webhook.retries,
          queueSize: webhook.queue,
          nodeId: o.cfg.node.id,
          logger: o.logger,
          metrics: o.metrics,
        })
      : undefined;
    const { cfg: _settings, ...checks } = o;
    this.health = new HealthMonitor(checks);
  }

  /** Binds the HTTP port before the daemon starts, so a port in use fails the start at once. */
  async listen(): Promise<void> {
    const { host, port } = this.o.cfg.http;
    if (port === 0) {
      this.o.logger.info('http listener off (http.port is 0)');
      return;
    }
    this.http = await startHttpServer({ host, port, metrics: this.o.metrics, health: () => this.health.report(), logger: this.o.logger });
  }

  /** The last periodic nft check (the status record reads it rather than spawning nft again). */
  firewallPresent(): boolean {
    return this.health.report().firewall.present;
  }

  /** Once the daemon has built its table: until then /healthz answers 503. */
  startChecks(): void {
    this.health.start();
  }

  /** First thing at shutdown, so no check touches the store or nft while the daemon closes them. */
  async closeListener(): Promise<void> {
    this.health.stop();
    await this.http?.close();
  }

  /** Last thing at shutdown, so the bans decided while the daemon drained are still sent. */
  async closeNotifier(): Promise<void> {
    await this.notifier?.close();
  }
}

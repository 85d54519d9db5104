import { TELEMETRY_LOADER_OPTIONS, TELEMETRY_PROTO_PATH } from '@dmp/contracts';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import assert from 'node:assert/strict';
import { EventEmitter, once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { callSignal } from './call-signal';

type IngestClient = grpc.Client & {
  Ingest(
    request: unknown,
    options: grpc.CallOptions,
    callback: (error: grpc.ServiceError | null) => void,
  ): grpc.ClientUnaryCall;
};

/** A real grpc-js server whose Ingest handler never answers: what does its signal see? */
describe('callSignal', () => {
  const server = new grpc.Server();
  const { KernelIngest } = (
    grpc.loadPackageDefinition(
      protoLoader.loadSync(TELEMETRY_PROTO_PATH, TELEMETRY_LOADER_OPTIONS),
    ) as unknown as {
      dmp: {
        telemetry: {
          v1: { KernelIngest: grpc.ServiceClientConstructor & { service: grpc.ServiceDefinition } };
        };
      };
    }
  ).dmp.telemetry.v1;
  const handled: { signal: AbortSignal; done: () => void }[] = [];
  let client: IngestClient;

  before(async () => {
    server.addService(KernelIngest.service, {
      Ingest: (call: grpc.ServerUnaryCall<unknown, unknown>) => handled.push(callSignal(call)),
    });
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    client = new KernelIngest(
      `127.0.0.1:${port}`,
      grpc.credentials.createInsecure(),
    ) as unknown as IngestClient;
  });

  after(() => {
    for (const h of handled) h.done();
    client.close();
    server.forceShutdown();
  });

  const aborted = async (signal: AbortSignal) => {
    if (!signal.aborted) await once(signal, 'abort');
    return signal.reason as unknown;
  };

  it("aborts when the call's deadline passes", async () => {
    const answered = new Promise<grpc.ServiceError | null>((resolve) =>
      client.Ingest({ messages: [] }, { deadline: Date.now() + 300 }, resolve),
    );
    const started = Date.now();
    const error = await answered;
    assert.equal(error?.code, grpc.status.DEADLINE_EXCEEDED);
    // The client resets the stream at its deadline, just before the server's own deadline.
    assert.match(String(await aborted(handled.at(-1)!.signal)), /^(cancelled|deadline)$/);
    assert.ok(Date.now() - started < 2_000);
  });

  it("aborts with 'deadline' at the deadline of a call nobody cancels, and at once past it", async () => {
    const call = Object.assign(new EventEmitter(), { cancelled: false, getDeadline: () => Date.now() + 50 });
    const { signal, done } = callSignal(call);
    assert.equal(signal.aborted, false);
    assert.equal(await aborted(signal), 'deadline');
    done();
    assert.equal(call.listenerCount('cancelled'), 0, 'done() lets go of the call');
    const late = Object.assign(new EventEmitter(), {
      cancelled: false,
      getDeadline: () => new Date(Date.now() - 1),
    });
    assert.equal(callSignal(late).signal.reason, 'deadline');
    const forever = Object.assign(new EventEmitter(), { cancelled: false, getDeadline: () => Infinity });
    const open = callSignal(forever);
    forever.emit('cancelled');
    assert.equal(open.signal.reason, 'cancelled');
  });

  it("aborts with 'cancelled' when the client cancels the call", async () => {
    const count = handled.length;
    const call = client.Ingest({ messages: [] }, { deadline: Date.now() + 60_000 }, () => undefined);
    while (handled.length === count) await new Promise((resolve) => setTimeout(resolve, 5));
    assert.equal(handled.at(-1)!.signal.aborted, false, 'not before');
    call.cancel();
    assert.equal(await aborted(handled.at(-1)!.signal), 'cancelled');
  });
});

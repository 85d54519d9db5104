import { AlarmErrorCode, DmpError, KernelErrorCode } from '@dmp/contracts';
import {
  Controller,
  Get,
  Module,
  NotFoundException,
  UseFilters,
  UseGuards,
  type INestApplication,
} from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import assert from 'node:assert/strict';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { AdminExceptionFilter, adminErrorAnswer } from './admin-exception.filter';
import {
  adminApiAuthProvider,
  AdminTokenGuard,
  adminTokenDigest,
  decideAdminAccess,
} from './admin-token.guard';

const TOKEN = 'admin-spec-token-0123456789';

describe('decideAdminAccess', () => {
  const expected = adminTokenDigest(TOKEN);

  it('refuses everything when no token is configured (the admin API is off)', () => {
    assert.equal(decideAdminAccess(undefined, undefined), 'off');
    assert.equal(decideAdminAccess(undefined, `Bearer ${TOKEN}`), 'off');
    assert.equal(decideAdminAccess(undefined, 'Bearer '), 'off');
  });

  it('lets through only the configured bearer token', () => {
    assert.equal(decideAdminAccess(expected, `Bearer ${TOKEN}`), 'allowed');
    assert.equal(decideAdminAccess(expected, `bearer ${TOKEN}  `), 'allowed');
    for (const header of [
      undefined,
      '',
      TOKEN,
      `Basic ${TOKEN}`,
      `Bearer ${TOKEN}x`,
      `Bearer ${TOKEN} x`,
      'Bearer',
    ])
      assert.equal(decideAdminAccess(expected, header), 'denied', String(header));
  });
});

describe('adminErrorAnswer', () => {
  const id = () => 'error-id-1';

  it('answers an HttpException as Nest shapes it', () => {
    assert.deepEqual(adminErrorAnswer(new NotFoundException('device d-1 is not registered'), id), {
      status: 404,
      body: { statusCode: 404, message: 'device d-1 is not registered', error: 'Not Found' },
    });
  });

  it("answers a DmpError with its code's registered HTTP status, code and message", () => {
    assert.deepEqual(adminErrorAnswer(new DmpError(AlarmErrorCode.NotFound, 'no open alarm a-1'), id), {
      status: 404,
      body: { statusCode: 404, code: 'DMP_ERR_ALARM_NOT_FOUND', message: 'no open alarm a-1' },
    });
    assert.equal(
      adminErrorAnswer(new DmpError(AlarmErrorCode.Conflict, 'kept changing', true), id).status,
      409,
    );
  });

  it('answers other errors with an error id and never their message: 503 when retryable, else 500', () => {
    assert.deepEqual(
      adminErrorAnswer(new DmpError(KernelErrorCode.MetadataUnavailable, 'redis: x', true), id),
      {
        status: 503,
        body: {
          statusCode: 503,
          error: 'Service Unavailable',
          code: 'DMP_ERR_METADATA_UNAVAILABLE',
          errorId: 'error-id-1',
        },
        errorId: 'error-id-1',
      },
    );
    assert.deepEqual(adminErrorAnswer(new Error('connect ECONNREFUSED 127.0.0.1:6379'), id), {
      status: 503,
      body: { statusCode: 503, error: 'Service Unavailable', errorId: 'error-id-1' },
      errorId: 'error-id-1',
    });
    assert.deepEqual(adminErrorAnswer(new TypeError('x is undefined'), id), {
      status: 500,
      body: { statusCode: 500, error: 'Internal Server Error', errorId: 'error-id-1' },
      errorId: 'error-id-1',
    });
    assert.equal(adminErrorAnswer(new DmpError(KernelErrorCode.Internal, 'bug', false), id).status, 500);
    assert.equal(adminErrorAnswer(undefined, id).status, 500);
  });
});

describe('AdminTokenGuard and AdminExceptionFilter in a Nest app', () => {
  @Controller('admin')
  @UseGuards(AdminTokenGuard)
  @UseFilters(AdminExceptionFilter)
  class SpecController {
    @Get('ok')
    ok() {
      return { ok: true };
    }
    @Get('alarm')
    alarm() {
      throw new DmpError(AlarmErrorCode.NotAcknowledgeable, 'alarm a-1: still pending');
    }
    @Get('bug')
    bug() {
      throw new Error('internal detail: password=hunter2');
    }
  }

  const CONFIG = Symbol('CONFIG');
  const start = async (token: string | undefined) => {
    @Module({
      controllers: [SpecController],
      providers: [
        { provide: CONFIG, useValue: { adminToken: token } },
        adminApiAuthProvider<{ adminToken?: string }>(CONFIG, (c) => c.adminToken),
        AdminTokenGuard,
      ],
    })
    class SpecModule {}
    const app = await NestFactory.create(SpecModule, { logger: false });
    await app.listen(0, '127.0.0.1');
    return app;
  };
  const call = async (app: INestApplication, path: string, token?: string) => {
    const { port } = (app.getHttpServer() as Server).address() as AddressInfo;
    const response = await fetch(`http://127.0.0.1:${port}/admin/${path}`, {
      headers: token ? { authorization: `Bearer ${token}` } : {},
    });
    return { status: response.status, body: (await response.json()) as Record<string, unknown> };
  };

  let withToken: INestApplication;
  let withoutToken: INestApplication;
  before(async () => {
    withToken = await start(TOKEN);
    withoutToken = await start(undefined);
  });
  after(async () => {
    await withToken?.close();
    await withoutToken?.close();
  });

  it('answers 401 without or with a wrong token, 200 with the right one', async () => {
    assert.deepEqual(await call(withToken, 'ok'), {
      status: 401,
      body: { statusCode: 401, message: 'a valid admin bearer token is required', error: 'Unauthorized' },
    });
    assert.equal((await call(withToken, 'ok', 'wrong-token-0123456789')).status, 401);
    assert.deepEqual(await call(withToken, 'ok', TOKEN), { status: 200, body: { ok: true } });
  });

  it('answers 503 to every request when ADMIN_TOKEN is unset, whatever the token sent', async () => {
    for (const token of [undefined, TOKEN, 'anything'])
      assert.deepEqual(await call(withoutToken, 'ok', token), {
        status: 503,
        body: {
          statusCode: 503,
          message: 'the admin API is off: set ADMIN_TOKEN',
          error: 'Service Unavailable',
        },
      });
  });

  it('maps errors at the edge: codes to their status, anything else to 500 with an error id only', async () => {
    assert.deepEqual(await call(withToken, 'alarm', TOKEN), {
      status: 409,
      body: {
        statusCode: 409,
        code: 'DMP_ERR_ALARM_NOT_ACKNOWLEDGEABLE',
        message: 'alarm a-1: still pending',
      },
    });
    const bug = await call(withToken, 'bug', TOKEN);
    assert.equal(bug.status, 500);
    assert.deepEqual(Object.keys(bug.body).sort(), ['error', 'errorId', 'statusCode']);
    assert.match(String(bug.body.errorId), /^[0-9a-f-]{36}$/);
  });
});

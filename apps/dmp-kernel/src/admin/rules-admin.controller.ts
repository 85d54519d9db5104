import { AdminExceptionFilter, AdminTokenGuard } from '@dmp/http';
import { formatDuration, formatRuleError, type SourceFile } from '@dmp/rules';
import {
  BadRequestException,
  Body,
  Controller,
  Get,
  HttpCode,
  Post,
  Put,
  UseFilters,
  UnprocessableEntityException,
  UseGuards,
} from '@nestjs/common';
import { z } from 'zod';
import { RuleSetHolder, RuleSetRejectedError, type RuleSetInfo } from '../rules/rule-set.holder';

/** `PUT /rules`: the whole rule set, as files (`{ "files": { "temperature.yaml": "rules: …" } }` or a list). */
const putRulesSchema = z.strictObject({
  files: z.union([
    z.record(z.string(), z.string()),
    z.array(z.strictObject({ path: z.string(), text: z.string() })),
  ]),
});

export interface RulesView extends RuleSetInfo {
  dir: string;
  files: SourceFile[];
  summary: { id: string; name: string; at: string; for: string; alarm: string | null; actions: string[] }[];
}

/**
 * The rule set through the admin API (Bearer ADMIN_TOKEN). `PUT /rules` replaces it as a whole: validated
 * and compiled, refused with 422 and file:line:column errors if anything is wrong (the running set stays),
 * else written to the rules directory (the files stay the source of truth) and swapped in atomically.
 */
@Controller('rules')
@UseGuards(AdminTokenGuard)
@UseFilters(AdminExceptionFilter)
export class RulesAdminController {
  constructor(private readonly holder: RuleSetHolder) {}

  @Get()
  get(): RulesView {
    return this.view();
  }

  @Put()
  async put(@Body() body: unknown): Promise<RulesView> {
    const parsed = putRulesSchema.safeParse(body ?? {});
    if (!parsed.success)
      throw new BadRequestException({
        statusCode: 400,
        message: 'expected { "files": { "<name>.yaml": "<text>", … } }',
        issues: parsed.error.issues.map((i) => ({ path: i.path.join('.'), message: i.message })),
      });
    const { files } = parsed.data;
    const list: SourceFile[] = Array.isArray(files)
      ? files
      : Object.entries(files).map(([path, text]) => ({ path, text }));
    await this.holder.replace(list).catch(asUnprocessable);
    return this.view();
  }

  /** Reads the rules directory again now (the file watcher does it by itself when enabled). */
  @Post('reload')
  @HttpCode(200)
  async reload(): Promise<RulesView> {
    await this.holder.reloadFromDisk();
    return this.view();
  }

  private view(): RulesView {
    const ruleSet = this.holder.current;
    return {
      ...this.holder.describe(),
      dir: this.holder.dir,
      files: [...ruleSet.files],
      summary: ruleSet.rules.map((rule) => ({
        id: rule.id,
        name: rule.name,
        at: `${rule.position.file}:${rule.position.line}`,
        for: formatDuration(rule.forMs),
        alarm: rule.alarm?.severity ?? null,
        actions: rule.actions.map(
          (a) =>
            `${a.kind}${a.kind === 'route' ? `:${a.topic}` : a.kind === 'command' ? `:${a.name}` : ''} on ${a.on}`,
        ),
      })),
    };
  }
}

/** A refused rule set is 422 with every error (file, line, column, message); the running set is unchanged. */
function asUnprocessable(error: unknown): never {
  if (!(error instanceof RuleSetRejectedError)) throw error;
  throw new UnprocessableEntityException({
    statusCode: 422,
    error: 'Unprocessable Entity',
    code: error.code,
    message: 'rule set refused; the running rule set is unchanged',
    errors: error.errors,
    text: error.errors.map(formatRuleError),
  });
}

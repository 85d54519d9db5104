/**
 * Named unit conversions product models may declare (`convert: °F→°C`). Every unit is a linear map to
 * its dimension's base unit (value × factor + offset), so any two units of one dimension convert.
 */
interface Unit {
  dimension: string;
  factor: number;
  offset?: number;
}

const units: Record<string, Unit> = {};
const define = (names: string[], unit: Unit) => {
  for (const name of names) units[name.toLowerCase()] = unit;
};

// Temperature (base: kelvin).
define(['°C', 'C', 'degC', 'celsius'], { dimension: 'temperature', factor: 1, offset: 273.15 });
define(['°F', 'F', 'degF', 'fahrenheit'], {
  dimension: 'temperature',
  factor: 5 / 9,
  offset: 273.15 - (32 * 5) / 9,
});
define(['K', 'kelvin'], { dimension: 'temperature', factor: 1 });
// Electricity.
define(['V'], { dimension: 'voltage', factor: 1 });
define(['mV'], { dimension: 'voltage', factor: 1e-3 });
define(['kV'], { dimension: 'voltage', factor: 1e3 });
define(['A'], { dimension: 'current', factor: 1 });
define(['mA'], { dimension: 'current', factor: 1e-3 });
define(['W'], { dimension: 'power', factor: 1 });
define(['mW'], { dimension: 'power', factor: 1e-3 });
define(['kW'], { dimension: 'power', factor: 1e3 });
define(['Wh'], { dimension: 'energy', factor: 1 });
define(['kWh'], { dimension: 'energy', factor: 1e3 });
// Pressure (base: pascal).
define(['Pa'], { dimension: 'pressure', factor: 1 });
define(['hPa', 'mbar'], { dimension: 'pressure', factor: 100 });
define(['kPa'], { dimension: 'pressure', factor: 1e3 });
define(['bar'], { dimension: 'pressure', factor: 1e5 });
define(['psi'], { dimension: 'pressure', factor: 6894.757293168 });
// Length, time, ratio.
define(['mm'], { dimension: 'length', factor: 1e-3 });
define(['cm'], { dimension: 'length', factor: 1e-2 });
define(['m'], { dimension: 'length', factor: 1 });
define(['km'], { dimension: 'length', factor: 1e3 });
define(['ms'], { dimension: 'time', factor: 1e-3 });
define(['s'], { dimension: 'time', factor: 1 });
define(['min'], { dimension: 'time', factor: 60 });
define(['h'], { dimension: 'time', factor: 3600 });
define(['%', 'percent'], { dimension: 'ratio', factor: 1e-2 });
define(['ratio', 'fraction'], { dimension: 'ratio', factor: 1 });

/** The units `convert` accepts, for error messages and docs. */
export const knownUnits = (): string[] => Object.keys(units).sort();

export type Conversion = (value: number) => number;

/** A linear `value × scale + offset`. */
export const linear =
  (scale: number, offset: number): Conversion =>
  (value) =>
    value * scale + offset;

/**
 * `°F→°C`, `F->C`, `mV to V`, or `{ from, to }`: the conversion, or why there is none.
 */
export function namedConversion(spec: string | { from: string; to: string }): Conversion | string {
  let from: string;
  let to: string;
  if (typeof spec === 'string') {
    const parts = spec.split(/\s*(?:→|->|\bto\b)\s*/);
    if (parts.length !== 2 || !parts[0] || !parts[1])
      return `"${spec}" is not a conversion; write it as FROM→TO, e.g. °F→°C or mV→V`;
    [from, to] = parts.map((p) => p.trim());
  } else {
    ({ from, to } = spec);
  }
  const a = units[from.toLowerCase()];
  const b = units[to.toLowerCase()];
  if (!a) return `unknown unit "${from}"`;
  if (!b) return `unknown unit "${to}"`;
  if (a.dimension !== b.dimension) return `cannot convert ${a.dimension} (${from}) to ${b.dimension} (${to})`;
  const aOffset = a.offset ?? 0;
  const bOffset = b.offset ?? 0;
  // to = (from × a.factor + a.offset − b.offset) / b.factor
  return linear(a.factor / b.factor, (aOffset - bOffset) / b.factor);
}

// The attribute form of a feature in the planner's editor (editor.js), generated from its layer's
// schema: GET /api/sites/{site}/layers gives each layer's `fields` as JSON Schema properties and
// the names `required`. An enumeration becomes a select, a number a number input with its
// bounds, a boolean a checkbox, text a text input; a required field is marked. Labels and the
// enumerations' words come from i18n.js (`field.*`, `enum.*`), else the server's own title or
// value, so a field the table does not know yet still gets its input. The browser does not
// check the values: the server does, and its refusal is shown on the feature.
import { el } from "./dom.js";
import { MESSAGES, t } from "./i18n.js";

// The table's words for `key` when it has them, else `fallback` (a server's name for something
// the table does not know).
export function words(key, fallback) {
  return MESSAGES[key] ? t(key) : fallback;
}

export function fieldLabel(name, schema = {}) {
  return words(`field.${name}`, schema.title || name);
}

// A value as the planner reads it: an enumeration's words, "–" for none.
export function valueText(value) {
  if (value === null || value === undefined || value === "") return "–";
  if (typeof value === "string" && MESSAGES[`enum.${value}`]) return t(`enum.${value}`);
  return typeof value === "string" ? `“${value}”` : String(value);
}

// A field's schema without its null alternative (`anyOf: [{...}, {type: "null"}]`), and
// whether null (none: the default) is allowed.
export function fieldShape(schema) {
  const variants = schema.anyOf || schema.oneOf;
  if (!variants) return { shape: schema, nullable: false };
  const shape = variants.find((v) => v.type !== "null") || {};
  return { shape: { ...shape, title: schema.title ?? shape.title }, nullable: variants.some((v) => v.type === "null") };
}

// One field of the form: its row, its input, how to read and write its value, and where the
// server's reason for refusing it goes.
export function buildField(prefix, name, schema, required) {
  const { shape } = fieldShape(schema);
  const id = `${prefix}-${name}`;
  const error = el("span", { class: "field-error", id: `${id}-error` });
  const label = el("label", { htmlFor: id }, fieldLabel(name, schema));
  if (required) {
    label.append(" ", el("span", { class: "required", "aria-hidden": "true" }, "*"));
  }
  let input;
  let read;
  let write;
  if (Array.isArray(shape.enum)) {
    input = el("select", { id, name });
    input.append(el("option", { value: "" }, required ? t("editor.choose") : t("editor.none")));
    for (const value of shape.enum) input.append(el("option", { value: String(value) }, words(`enum.${value}`, String(value))));
    read = () => (input.value === "" ? null : shape.enum.find((v) => String(v) === input.value) ?? input.value);
    write = (value) => {
      input.value = value === null || value === undefined ? "" : String(value);
    };
  } else if (shape.type === "integer" || shape.type === "number") {
    input = el("input", { id, name, type: "number", step: shape.type === "integer" ? "1" : "any", inputMode: "decimal" });
    if (shape.minimum !== undefined) input.min = String(shape.minimum);
    if (shape.maximum !== undefined) input.max = String(shape.maximum);
    // What was typed goes to the server as typed (a number if it is one): the server judges it.
    read = () => {
      const raw = input.value.trim();
      if (raw === "") return null;
      const number = Number(raw);
      return Number.isFinite(number) ? number : raw;
    };
    write = (value) => {
      input.value = value === null || value === undefined ? "" : String(value);
    };
  } else if (shape.type === "boolean") {
    input = el("input", { id, name, type: "checkbox" });
    read = () => input.checked;
    write = (value) => {
      input.checked = Boolean(value ?? shape.default);
    };
  } else {
    input = el("input", { id, name, type: "text", autocomplete: "off" });
    if (shape.maxLength) input.maxLength = shape.maxLength;
    read = () => (input.value.trim() === "" ? null : input.value);
    write = (value) => {
      input.value = value === null || value === undefined ? "" : String(value);
    };
  }
  input.setAttribute("aria-describedby", error.id);
  if (required) {
    input.required = true;
    input.setAttribute("aria-required", "true");
  }
  const row = el("div", { class: `field ed-field${shape.type === "boolean" ? " ed-check" : ""}`, "data-field": name }, label, input, error);
  return {
    name,
    row,
    input,
    read,
    write,
    setError(reason) {
      error.textContent = reason || "";
      if (reason) input.setAttribute("aria-invalid", "true");
      else input.removeAttribute("aria-invalid");
    },
  };
}

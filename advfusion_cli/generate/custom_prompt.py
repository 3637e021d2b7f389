"""`generate` for a custom task: the input fills one template field (data.custom.input_field,
else cut_field, else the template's only non-language field); the language field is the
run's target, written as in training (its display name). Trailing newlines of the input are
dropped: a record's field rarely ends with one, and the template says what follows it."""

from __future__ import annotations

from advfusion_cli.data.languages import display_name
from advfusion_cli.data.records import TaskExample
from advfusion_cli.data.template import parse_template
from advfusion_cli.errors import UserError
from advfusion_cli.generate.inputs import InputText


def custom_item(source: InputText, custom, language: str):
    from advfusion_cli.generate.prompts import PromptItem

    template = parse_template(custom.template)
    field = custom.generation_field
    values = {}
    for name in template.fields:
        if name == field:
            values[name] = source.text.rstrip("\n")
        elif name == custom.language_field:
            values[name] = display_name(language)
        else:
            raise UserError(
                f"The task's template also needs field '{name}', which generate cannot fill "
                f"(its input fills '{field}'); use a template with one input field."
            )
    prompt, spans = template.render(values)
    meta = {"inner_span": spans[field], "input": source.name}
    return PromptItem(TaskExample(source.name, "custom", language, prompt, "", meta=meta))

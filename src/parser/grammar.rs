//! The slash-command grammar of ACTIONS.md (`/sale 3 rice 15, 2 sugar`, `/paid ahmed 200`…).
//! Invariant: a line that starts with `/` either parses into exactly the action the grammar
//! names or yields an error that says the expected form; nothing is guessed.

use crate::action::{Action, Dec, Item, OrderStatus, Period};

fn num(tok: &str) -> Option<Dec> {
    Dec::parse(tok.strip_prefix('@').unwrap_or(tok))
}

fn order_id(tok: &str) -> Option<i64> {
    tok.trim_start_matches('#').parse().ok().filter(|n| *n > 0)
}

fn words(toks: &[&str]) -> Option<String> {
    (!toks.is_empty()).then(|| toks.join(" "))
}

/// `qty product… [price]`, e.g. `3 rice 15` or `2 cooking oil`.
fn item(part: &str) -> Result<Item, String> {
    let toks: Vec<&str> = part.split_whitespace().collect();
    let usage = || format!("{part:?}: expected <qty> <product> [unit price], like 3 rice 15");
    let (first, rest) = toks.split_first().ok_or_else(usage)?;
    let qty = num(first).ok_or_else(usage)?;
    let (product, price) = match rest.split_last() {
        Some((last, name)) if !name.is_empty() && num(last).is_some() => (name, num(last)),
        _ => (rest, None),
    };
    Ok(Item {
        product: words(product).ok_or_else(usage)?,
        qty,
        unit_price: price,
        total: None,
    })
}

fn items(list: &str) -> Result<Vec<Item>, String> {
    list.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(item)
        .collect()
}

/// Splits a trailing `to <customer>` (and `on credit` / `credit`) off a sale.
fn sale_tail(args: &str) -> (String, Option<String>, Option<bool>) {
    let mut body = args.trim().to_owned();
    let mut paid = None;
    for suffix in [" on credit", " credit"] {
        if body.to_lowercase().ends_with(suffix) {
            body.truncate(body.len() - suffix.len());
            paid = Some(false);
            break;
        }
    }
    let lower = body.to_lowercase();
    match lower.rfind(" to ").or_else(|| lower.rfind(" for ")) {
        Some(i) => {
            let sep = if lower[i..].starts_with(" to ") { 4 } else { 5 };
            let customer = body[i + sep..].trim().to_owned();
            body.truncate(i);
            (body, (!customer.is_empty()).then_some(customer), paid)
        }
        None => (body, None, paid),
    }
}

/// A product or customer name followed by a number ("rice 15"): both, when they are there.
fn name_then_number(toks: &[&str]) -> Option<(String, Dec)> {
    match toks {
        [name @ .., n] if !name.is_empty() => Some((name.join(" "), num(n)?)),
        _ => None,
    }
}

fn usage<T>(u: &str) -> Result<T, String> {
    Err(format!("usage: {u}"))
}

/// Parses a slash command. `None` if `text` is not one.
pub fn parse_command(text: &str) -> Option<Result<Action, String>> {
    let text = text.trim();
    let rest = text.strip_prefix('/')?;
    let (cmd, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
    // Group chats address commands as /cmd@botname.
    let cmd = cmd.split('@').next().unwrap_or(cmd).to_lowercase();
    let args = args.trim();
    let toks: Vec<&str> = args.split_whitespace().collect();
    Some(match cmd.as_str() {
        "sale" | "sell" | "sold" => sale(args),
        "restock" | "count" | "stocktake" | "stock" | "price" | "addproduct" => {
            stock_command(&cmd, &toks)
        }
        "expense" => expense(&toks),
        "paid" | "payment" => match name_then_number(&toks) {
            Some((customer, amount)) => Ok(Action::RecordPayment { customer, amount }),
            None => usage("/paid <customer> <amount>"),
        },
        "balance" => match words(&toks) {
            Some(customer) => Ok(Action::CustomerBalance { customer }),
            None => usage("/balance <customer>"),
        },
        "order" | "assign" | "delivered" | "cancel" | "orders" => order_command(&cmd, &toks),
        "report" => report(&toks),
        "undo" => Ok(Action::Undo {}),
        "help" | "start" => Ok(Action::Help {}),
        "join" => Err(
            "/join links a chat account to a staff member; use it from Telegram or WhatsApp".into(),
        ),
        other => Err(format!("unknown command /{other} (try /help)")),
    })
}

/// `/sale 3 rice 15, 2 sugar to Ahmed on credit`.
fn sale(args: &str) -> Result<Action, String> {
    let (body, customer, paid) = sale_tail(args);
    match items(&body)? {
        items if items.is_empty() => usage(
            "/sale <qty> <product> [unit price], <qty> <product>… [to <customer>] [on credit]",
        ),
        items => Ok(Action::RecordSale {
            items,
            customer,
            paid,
        }),
    }
}

/// The commands about one product: `/restock`, `/count`, `/stock`, `/price`, `/addproduct`.
fn stock_command(cmd: &str, toks: &[&str]) -> Result<Action, String> {
    match cmd {
        "restock" => {
            // A last number after the quantity is the unit cost.
            let with_cost = match toks {
                [head @ .., c] => name_then_number(head).zip(num(c)),
                _ => None,
            };
            match (with_cost, name_then_number(toks)) {
                (Some(((product, qty), cost)), _) => Ok(Action::Restock {
                    product,
                    qty,
                    unit_cost: Some(cost),
                    supplier: None,
                }),
                (None, Some((product, qty))) => Ok(Action::Restock {
                    product,
                    qty,
                    unit_cost: None,
                    supplier: None,
                }),
                _ => usage("/restock <product> <qty> [unit cost]"),
            }
        }
        "count" | "stocktake" => match name_then_number(toks) {
            Some((product, qty)) => Ok(Action::StockCount { product, qty }),
            None => usage("/count <product> <qty counted>"),
        },
        "stock" => Ok(Action::CheckStock {
            product: words(toks),
        }),
        "price" => match name_then_number(toks) {
            Some((product, price)) => Ok(Action::SetPrice { product, price }),
            None => usage("/price <product> <price>"),
        },
        _ => match name_then_number(toks) {
            Some((name, price)) => Ok(Action::AddProduct {
                name,
                price,
                unit: None,
                stock: None,
                low_stock_at: None,
            }),
            None => usage("/addproduct <name> <price>"),
        },
    }
}

/// `/expense 20 fuel [note…]`.
fn expense(toks: &[&str]) -> Result<Action, String> {
    let Some((amount, rest)) = toks
        .split_first()
        .and_then(|(a, rest)| Some((num(a)?, rest)))
    else {
        return usage("/expense <amount> [category] [note…]");
    };
    let (category, note) = match rest.split_first() {
        Some((c, n)) => (Some(c.to_string()), words(n)),
        None => (None, None),
    };
    Ok(Action::RecordExpense {
        amount,
        category,
        note,
    })
}

/// The commands about orders: `/order`, `/assign`, `/delivered`, `/cancel`, `/orders`.
fn order_command(cmd: &str, toks: &[&str]) -> Result<Action, String> {
    let one_id = match toks {
        [id] => order_id(id),
        _ => None,
    };
    match cmd {
        "order" => match toks.iter().position(|t| num(t).is_some()) {
            Some(i) if i > 0 => items(&toks[i..].join(" ")).map(|items| Action::CreateOrder {
                customer: toks[..i].join(" "),
                items,
                address: None,
            }),
            _ => usage("/order <customer> <qty> <product>, <qty> <product>…"),
        },
        "assign" => match toks {
            [id, driver @ ..] if !driver.is_empty() && order_id(id).is_some() => {
                Ok(Action::AssignDelivery {
                    order_id: order_id(id).expect("checked"),
                    driver: driver.join(" "),
                })
            }
            _ => usage("/assign <order number> <driver>"),
        },
        "delivered" => match one_id {
            Some(order_id) => Ok(Action::MarkDelivered { order_id }),
            None => usage("/delivered <order number>"),
        },
        "cancel" => match one_id {
            Some(order_id) => Ok(Action::CancelOrder { order_id }),
            None => usage("/cancel <order number>"),
        },
        _ => {
            let status = match toks {
                [] => Ok(None),
                [s] => match s.to_lowercase().as_str() {
                    "pending" => Ok(Some(OrderStatus::Pending)),
                    "assigned" => Ok(Some(OrderStatus::Assigned)),
                    "delivered" => Ok(Some(OrderStatus::Delivered)),
                    _ => Err(()),
                },
                _ => Err(()),
            };
            match status {
                Ok(status) => Ok(Action::ListOrders { status }),
                Err(()) => usage("/orders [pending|assigned|delivered]"),
            }
        }
    }
}

/// `/report [today|yesterday|week|7d|month|lastmonth]`.
fn report(toks: &[&str]) -> Result<Action, String> {
    let period = match toks {
        [] => Some(Period::Today),
        [p] => Period::parse(p),
        _ => None,
    };
    match period {
        Some(period) => Ok(Action::SalesReport { period }),
        None => usage("/report [today|yesterday|week|7d|month|lastmonth]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn p(text: &str) -> Value {
        serde_json::to_value(parse_command(text).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn every_command_of_the_contract_parses() {
        assert_eq!(
            p("/sale 3 rice 15"),
            json!({"action": "record_sale", "items": [{"product": "rice", "qty": 3, "unit_price": 15}]})
        );
        assert_eq!(
            p("/sale 3 rice, 2 sugar"),
            json!({"action": "record_sale", "items": [{"product": "rice", "qty": 3}, {"product": "sugar", "qty": 2}]})
        );
        assert_eq!(
            p("/sale 1.5 cooking oil 2.5 to Fatima Ali on credit"),
            json!({"action": "record_sale", "items": [{"product": "cooking oil", "qty": 1.5, "unit_price": 2.5}], "customer": "Fatima Ali", "paid": false})
        );
        assert_eq!(
            p("/restock sugar 20"),
            json!({"action": "restock", "product": "sugar", "qty": 20})
        );
        assert_eq!(
            p("/restock brown sugar 20 2.5"),
            json!({"action": "restock", "product": "brown sugar", "qty": 20, "unit_cost": 2.5})
        );
        assert_eq!(p("/stock"), json!({"action": "check_stock"}));
        assert_eq!(
            p("/stock rice"),
            json!({"action": "check_stock", "product": "rice"})
        );
        assert_eq!(
            p("/price rice 16"),
            json!({"action": "set_price", "product": "rice", "price": 16})
        );
        assert_eq!(
            p("/addproduct chocolate bar 1.20"),
            json!({"action": "add_product", "name": "chocolate bar", "price": 1.2})
        );
        assert_eq!(
            p("/expense 20 fuel"),
            json!({"action": "record_expense", "amount": 20, "category": "fuel"})
        );
        assert_eq!(
            p("/expense 20 fuel for the van"),
            json!({"action": "record_expense", "amount": 20, "category": "fuel", "note": "for the van"})
        );
        assert_eq!(
            p("/paid ahmed 200"),
            json!({"action": "record_payment", "customer": "ahmed", "amount": 200})
        );
        assert_eq!(
            p("/balance ahmed"),
            json!({"action": "customer_balance", "customer": "ahmed"})
        );
        assert_eq!(
            p("/order fatima 2 rice, 1 oil"),
            json!({"action": "create_order", "customer": "fatima", "items": [{"product": "rice", "qty": 2}, {"product": "oil", "qty": 1}]})
        );
        assert_eq!(
            p("/assign 17 musa"),
            json!({"action": "assign_delivery", "order_id": 17, "driver": "musa"})
        );
        assert_eq!(
            p("/delivered #17"),
            json!({"action": "mark_delivered", "order_id": 17})
        );
        assert_eq!(
            p("/cancel 17"),
            json!({"action": "cancel_order", "order_id": 17})
        );
        assert_eq!(p("/orders"), json!({"action": "list_orders"}));
        assert_eq!(
            p("/orders pending"),
            json!({"action": "list_orders", "status": "pending"})
        );
        for (arg, period) in [
            ("", "today"),
            ("today", "today"),
            ("yesterday", "yesterday"),
            ("week", "this_week"),
            ("7d", "last_7_days"),
            ("month", "this_month"),
            ("lastmonth", "last_month"),
            ("this_week", "this_week"),
            ("last_7_days", "last_7_days"),
        ] {
            assert_eq!(
                p(&format!("/report {arg}")),
                json!({"action": "sales_report", "period": period})
            );
        }
        assert_eq!(p("/undo"), json!({"action": "undo"}));
        assert_eq!(p("/help@tarn_shop_bot"), json!({"action": "help"}));
        assert_eq!(
            p("/SALE@tarn_bot 2 rice"),
            json!({"action": "record_sale", "items": [{"product": "rice", "qty": 2}]})
        );
    }

    #[test]
    fn malformed_commands_say_the_expected_form() {
        for bad in [
            "/sale",
            "/sale rice",
            "/restock sugar",
            "/price rice",
            "/paid 200",
            "/assign x musa",
            "/delivered",
            "/orders lost",
            "/report decade",
            "/frobnicate",
            "/order 2 rice",
        ] {
            let e = parse_command(bad).unwrap().unwrap_err();
            assert!(
                e.contains("usage") || e.contains("unknown command") || e.contains("expected"),
                "{bad}: {e}"
            );
        }
        assert!(parse_command("sold 3 rice").is_none());
        assert!(parse_command("'; DROP TABLE products; --").is_none());
    }
}
